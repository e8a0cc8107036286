"""`mer-nb reproduce` runs the papermill experiment notebooks and writes the promised files."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mer_nb.cli import reproduce
from mer_nb.table1 import PAPER_METHOD, ROW_NAMES, TABLE1_METHODS

COLUMNS = ['method', 'selection', 'run', 'protocol', 'dataset', 'metric', 'value', 'std', 'n_seeds', 'n_samples', 'ci_low', 'ci_high']


def _check(adir, datasets, methods=TABLE1_METHODS + (PAPER_METHOD,)):
    for f in ('table1.csv', 'table1.md', 'table1_confusion.png', 'table1_uf1.png', 'run.json', 'table1_sota.ipynb'):
        assert (adir / f).is_file(), f
    t = pd.read_csv(adir / 'table1.csv')
    assert list(t.columns[:len(COLUMNS)]) == COLUMNS
    ours = t[t.run == 'ours']
    assert set(ours.selection) == {'last', 'best-on-test'}
    assert set(ours.dataset) == set(datasets) and set(ours.metric) == {'UF1', 'UAR'}
    assert ours.value.between(0, 1).all() and (ours.ci_low <= ours.value + 1e-9).all() and (ours.value <= ours.ci_high + 1e-9).all()
    assert set(TABLE1_METHODS) == {'HTNet', 'LBP-TOP', 'Bi-WOOF', 'OFF-ApexNet', 'STSTNet', 'MobileViT'}
    assert set(ours.method) == {ROW_NAMES.get(m, m) for m in methods}   # our LBP is named for what it computes
    assert len(ours) == len(methods) * 2 * len(datasets) * 2
    assert ours.input.notna().all()
    for m in (ROW_NAMES['LBP-TOP'], 'Bi-WOOF'):  # SVMs: one fit per fold, both selections are the same predictions
        v = ours[ours.method == m].pivot_table(index=['dataset', 'metric'], columns='selection', values='value')
        assert (v['last'] == v['best-on-test']).all()
    run = json.loads((adir / 'run.json').read_text())
    assert run['preset']['name'] == 'smoke' and run['seeds'] == [0] and run['wall_seconds']['table1'] > 0
    assert run['versions']['torch'] and run['device'] in ('cpu', 'cuda')
    from mer_nb.core import can_pin
    if run['device'] == 'cpu' and can_pin():   # the instruction set: pinned to AVX2 by default, recorded for the process and its folds
        assert run['cpu']['isa'] == 'avx2' and run['cpu']['setting'] == 'avx2' and run['training_isa'] == 'avx2', run['cpu']
    md = (adir / 'table1.md').read_text()
    assert 'leave-one-subject-out' in md and 'LEAKY' in md and 'single fit (last = best-on-test)' in md
    assert 'registered as `LBP-TOP`' in md and 'faces+flows' in md and 'LBP (apex face + flow planes)' in md  # what our LBP computes
    return t


def test_table1_smoke_synthetic(tmp_path):
    reproduce('smoke', None, 'table1', tmp_path, log_output=False)
    t = _check(tmp_path / 'table1', {'composite'})
    assert set(t.run) == {'ours', 'ensemble'}  # published numbers (and "not reported" rows) only beside the data they were measured on


def test_table1_trained_baselines_on_fewer_seeds(tmp_path):
    """`baseline_seeds`: the trained baselines run on the first seeds only (for cost), the others on every seed; HTNet's
    comparison with such a baseline pairs its runs of those seeds; the table says so."""
    reproduce('smoke', None, 'table1', tmp_path, seeds=[0, 1], log_output=False,
              extra={'methods': ['HTNet', 'LBP-TOP', 'STSTNet'], 'baseline_seeds': 1})
    adir = tmp_path / 'table1'
    p = pd.read_csv(adir / 'table1_predictions.csv')
    assert p.groupby('method').seed.unique().map(sorted).map(list).to_dict() == {
        'HTNet': [0, 1], ROW_NAMES['LBP-TOP']: [0, 1], 'STSTNet': [0]}
    c = pd.read_csv(adir / 'comparisons.csv')
    c = c[c.dataset == 'composite'].set_index('comparison')
    assert c.loc['HTNet vs STSTNet', 'n_seeds'] == 1 and c.loc[f"HTNet vs {ROW_NAMES['LBP-TOP']}", 'n_seeds'] == 2
    assert 'STSTNet: seeds 0 only (1 of the 2 seeds' in (adir / 'table1.md').read_text()


# On the real composite (68 folds) the smoke run keeps the fast methods: OFF-ApexNet (2.7 M parameters) and MobileViT
# take minutes even at 3 epochs on one core. Both run in the synthetic smoke test above and in the full acceptance run.
REAL_SMOKE_METHODS = ['HTNet', 'LBP-TOP', 'Bi-WOOF', 'STSTNet']


def test_table1_smoke_real_composite(tmp_path, composite_root):
    reproduce('smoke', composite_root, 'table1', tmp_path, log_output=False, extra={'methods': REAL_SMOKE_METHODS})
    t = _check(tmp_path / 'table1', {'composite', 'smic', 'samm', 'casme2'}, REAL_SMOKE_METHODS)
    rep = t[t.run == 'reported'].set_index(['method', 'selection', 'dataset', 'metric']).value
    assert rep[('HTNet', 'best-on-test', 'composite', 'UF1')] == 0.8603 and rep[('HTNet', 'best-on-test', 'samm', 'UAR')] == 0.8124
    assert rep[('LBP-TOP', 'as published', 'smic', 'UF1')] == 0.2 and rep[('STSTNet', 'last', 'composite', 'UF1')] == 0.7209
    assert set(t[t.run == 'reported'].method) == {'HTNet', 'LBP-TOP', 'Bi-WOOF', 'OFF-ApexNet', 'STSTNet'}
    nr = t[t.run == 'not reported on this protocol']
    assert set(nr.method) == {'MMNet', 'Micron-BERT', 'HSTA'} and nr.value.isna().all()
    md = (tmp_path / 'table1' / 'table1.md').read_text()
    assert md.count('not reported on this protocol') >= 3 and '| MMNet ' in md


def test_cli_bad_data_is_one_line(tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent / 'mer-nb'), 'reproduce', '--data', str(tmp_path / 'nope'), '--out', str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'no such folder' in r.stderr, r.stderr


def test_noise_floor_published(tmp_path):
    "The noise-floor artefact through the CLI with --param and --results: two disjoint seed sets, the test, the published files, the summary."
    out, res = tmp_path / 'out', tmp_path / 'results'
    from mer_nb.cli import main
    assert main(['reproduce', '--preset', 'smoke', '--only', 'noise', '--seeds', '0,1', '--param', 'seeds_b=[3,4]',
                 '--out', str(out), '--results', str(res)]) == 0
    a = out / 'noise'
    seeds = pd.read_csv(a / 'noise_seeds.csv')
    assert sorted(set(seeds.seed)) == [0, 1, 3, 4] and seeds.UF1.between(0, 1).all()
    agree = pd.read_csv(a / 'noise_agreement.csv')
    assert len(agree) == 6 and agree.agreement.between(0, 1).all() and set(agree.pair) == {'within a set', 'across sets'}
    c = pd.read_csv(a / 'comparisons.csv')
    assert c.comparison.iloc[0].startswith('noise floor') and c.n_seeds.iloc[0] == 2
    md = (a / 'noise.md').read_text()
    assert 'seeds [0, 1]' in md and 'seeds [3, 4]' in md and 'Agreement of two seeds' in md
    assert sorted(f.name for f in (res / 'noise_smoke').iterdir()) == sorted(         # a preset other than quick: its own folder
        ['comparisons.csv', 'compute.json', 'noise.csv', 'noise.md', 'noise.png', 'noise_agreement.csv', 'noise_floor.ipynb',
         'noise_predictions.csv.gz', 'noise_seeds.csv', 'noise_calibration.csv', 'noise_calibration.png', 'run.json'])
    cal = pd.read_csv(a / 'noise_calibration.csv')          # 4 seeds: C(4, 2) / 2 = 3 splits, each once
    assert len(cal) == 3 and cal.seeds_a.str.startswith('0').all() and 'Calibration' in md
    run = json.loads((res / 'noise_smoke' / 'run.json').read_text())
    folds = pd.read_csv(a / 'noise_predictions.csv').subject.nunique()      # LOSO: one fold per subject
    assert run['parameters']['seeds_b'] == [3, 4] and run['fold_records'] == 4 * folds and run['training_core_seconds'] > 0
    assert main(['results', str(res)]) == 0


def test_run_json_records_the_training_code_the_kernel_used(tmp_path, monkeypatch, capsys):
    """The code on disk may change while a long run goes on (an edit, a checkout): run.json records the training-code
    hash the notebook kernel keyed its fold records with, not the one on disk when the artefact ends. Here the kernel
    imports a copy of the package whose training code differs (one statement added to `core`)."""
    import shutil
    import mer_nb
    from mer_nb.store import training_code
    pkg = tmp_path / 'pkg'
    shutil.copytree(Path(mer_nb.__file__).parent, pkg / 'mer_nb', ignore=shutil.ignore_patterns('__pycache__'))
    core = pkg / 'mer_nb' / 'core.py'
    core.write_text(core.read_text() + '\n_CHANGED = True\n')
    monkeypatch.setenv('PYTHONPATH', str(pkg))                  # the kernel's mer_nb; this process keeps its own
    reproduce('smoke', None, 'table4', tmp_path / 'out', log_output=False, extra={'configs': ['preset'], 'positions': ['lape']})
    run = json.loads((tmp_path / 'out' / 'table4' / 'run.json').read_text())
    kernel = subprocess.run([sys.executable, '-c', 'from mer_nb.store import training_code; print(training_code())'],
                            capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()   # PYTHONPATH: the copy's
    assert run['training_code'] == kernel != training_code()
    assert 'the training code on disk changed while table4 ran' in capsys.readouterr().out
    md = (tmp_path / 'out' / 'table4' / 'table4.md').read_text()          # and the table says what it left out
    assert '**Run here**: the configuration(s) preset only (`configs`); attending is not in this table.' in md
    assert '**Run here**: HTNet+LAPE only (`positions`)' in md
