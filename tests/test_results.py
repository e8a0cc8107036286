"""The committed results: the README shows exactly what `results/` holds, and every artefact there is complete and checkable."""
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import f1_score

from mer_nb.baselines import BASELINES
from mer_nb.cli import ARTEFACTS, main
from mer_nb.table1 import ROW_NAMES
from mer_nb.report import result_folder, result_stem, results_summary, update_readme

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'results'
ARTEFACT_DIRS = sorted(d for d in RESULTS.iterdir() if d.is_dir()) if RESULTS.is_dir() else []
NO_TRAINING = {'fig1'}      # Figure 1 counts the architecture: no predictions, no comparisons


@pytest.mark.parametrize('page', ['README.md', 'results/README.md'])
def test_pages_show_results(page):
    """Fails when a page's generated block is not what `results/` holds: the front page's headline table
    (`headline_summary`), results/README.md's provenance and every comparison (`results_summary`). Regenerate with
    `mer-nb results results --readme README.md` and `--readme results/README.md`."""
    from mer_nb.report import HEADLINE_START, README_START
    text = (ROOT / page).read_text()
    assert (HEADLINE_START if page == 'README.md' else README_START) in text
    assert update_readme(ROOT / page, RESULTS, list(ARTEFACTS), check=True), f'{page} does not show results/: run `mer-nb results results --readme {page}`'
    if RESULTS.is_dir(): assert main(['results', str(RESULTS), '--readme', str(ROOT / page), '--check']) == 0


def test_front_page_is_short_and_its_example_runs(tmp_path, monkeypatch):
    """README.md stays a front page (at most 150 lines, one figure that exists, links that resolve), and its Python
    example runs as printed."""
    import re
    text = (ROOT / 'README.md').read_text()
    assert len(text.splitlines()) <= 150, len(text.splitlines())
    for target in re.findall(r'\]\(([^)#]+)\)', text):
        if not target.startswith(('http://', 'https://')): assert (ROOT / target).exists(), target
    code = re.search(r'```python\n(.*?)```', text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    out = {}
    exec(compile(code, 'README.md', 'exec'), out)
    assert 0 <= out['uf1'](out['last'].label, out['last'].pred) <= 1 and (tmp_path / 'runs' / 'example').is_dir()


@pytest.mark.parametrize('adir', ARTEFACT_DIRS, ids=[d.name for d in ARTEFACT_DIRS])
def test_artefact_complete(adir):
    run = json.loads((adir / 'run.json').read_text())
    name = run['artefact']
    # results/<name>, or results/<name>_<config> for a run of only a non-preset configuration (Table 5's attending one)
    assert name in ARTEFACTS and adir.name == result_folder(name, run['parameters'].get('configs'), run['preset']['name'])
    stem = result_stem(adir)
    assert run['training_code'] and run['git_revision'] and run['command'] and run['wall_seconds'][name] > 0
    assert len(run['seeds']) >= 5 and run['parameters']['data'], 'committed results: the composite at five seeds or more'
    for f in (f'{stem}.md', f'{stem}.csv', f'{ARTEFACTS[name].notebook}.ipynb'):
        assert (adir / f).is_file(), f
    scores = pd.read_csv(adir / f'{stem}.csv')
    if name in NO_TRAINING:
        assert 'training_core_seconds' not in run and not list(adir.glob('*predictions*')) and len(scores)
        return
    preds = pd.read_csv(adir / f'{stem}_predictions.csv.gz')       # gzipped per-sample predictions of every row
    assert {'id', 'seed', 'subject', 'label', 'pred', 'selection'} <= set(preds.columns)
    assert preds.id.nunique() == 442 and preds.subject.nunique() == 68 and set(preds.seed) >= set(run['seeds'])
    comps = list(adir.glob('comparisons*.csv'))                     # comparisons_<config>.csv: a table <name>_<config>
    assert comps, 'no comparisons'
    for f in comps:
        c = pd.read_csv(f)
        assert c.verdict.isin(['a better', 'b better', 'not resolved']).all(), f
        assert ((c.p_holm >= 0.05) == (c.verdict == 'not resolved')).all(), f
    assert not (adir / f'{stem}_predictions.csv').exists()          # big files only gzipped
    assert sum(f.stat().st_size for f in adir.iterdir()) < 5_000_000


def test_summary_reads_only_results():
    s = results_summary(RESULTS, list(ARTEFACTS))
    for d in ARTEFACT_DIRS: assert f'results/{d.name}/' in s


# One training shown in two artefacts (the run key is shared: same method, model, preset, folds and seeds). Whatever
# code version each artefact records, their saved predictions of it must agree to the last digit.
SHARED_RUNS = [
    ('table4', {'method': 'HTNet+LAPE', 'config': 'preset'}, 'table5', {'method': 'HTNet+LAPE'}),
    ('table4', {'method': 'HTNet (scalar term)', 'config': 'preset'}, 'table1', {'method': 'HTNet'}),
    ('table4_attending', {'method': 'HTNet+LAPE', 'config': 'attending'}, 'table5_attending', {'method': 'HTNet+LAPE'}),
    ('noise', {'method': 'HTNet seeds *'}, 'table4', {'method': 'HTNet (scalar term)', 'config': 'preset'}),
    ('noise', {'method': 'HTNet seeds *'}, 'table1', {'method': 'HTNet'}),
    ('table3', {'method': 'HTNet+LAPE+ESAAT', 'augmentation': 'none'}, 'table5', {'method': 'HTNet+LAPE+ESAAT'}),
    ('table3', {'method': 'HTNet+LAPE+ESAAT', 'augmentation': 'diffusion'}, 'table1', {'method': 'HTNet+LAPE+ESAAT+diffusion'}),
]


def _rows(name: str, where: dict) -> pd.DataFrame:
    from fnmatch import fnmatchcase
    d = pd.read_csv(RESULTS / name / f'{result_stem(RESULTS / name)}_predictions.csv.gz')
    for col, pat in where.items():
        d = d[d[col].astype(str).map(lambda v: fnmatchcase(v, pat))]
    assert len(d), f'{name}: no predictions where {where}'
    return d


@pytest.mark.parametrize('a,wa,b,wb', SHARED_RUNS, ids=[f'{a}-{b}-{wb["method"]}' for a, _, b, wb in SHARED_RUNS])
def test_a_run_shown_twice_agrees(a, wa, b, wb):
    if not ((RESULTS / a).is_dir() and (RESULTS / b).is_dir()): pytest.skip(f'{a} or {b} not committed')
    x, y = _rows(a, wa), _rows(b, wb)
    key = ['seed', 'id', 'selection']
    m = x.merge(y, on=key, suffixes=('_a', '_b'))
    seeds, sels = set(x.seed) & set(y.seed), set(x.selection) & set(y.selection)
    both = lambda d: d[d.seed.isin(seeds) & d.selection.isin(sels)]
    assert seeds and 'last' in sels and len(m) == len(both(x)) == len(both(y)), 'the shared seeds cover different samples'
    for col in ('fold', 'epoch', 'label', 'pred', 'p0', 'p1', 'p2'):
        same = (m[f'{col}_a'] == m[f'{col}_b'])
        assert same.all(), f'{a} vs {b}: {col} differs on {int((~same).sum())} of {len(m)} rows (seeds {sorted(seeds)})'


BASELINE_ROWS = {ROW_NAMES.get(b, b) for b in BASELINES}       # the trained and fitted baselines: no ensemble row asked of them
TRAINED_DIRS = [d for d in ARTEFACT_DIRS if d.name not in NO_TRAINING]


@pytest.mark.parametrize('adir', TRAINED_DIRS, ids=[d.name for d in TRAINED_DIRS])
def test_seed_ensemble_rows(adir):
    """Every HTNet-family arm trained on several seeds shows a `seed ensemble` row, and its composite UF1 is scikit-learn's
    macro F1 of the arg max of that arm's seeds' mean `last`-epoch probabilities in the committed predictions."""
    stem = result_stem(adir)
    table, preds = pd.read_csv(adir / f'{stem}.csv'), pd.read_csv(adir / f'{stem}_predictions.csv.gz')
    by = ['method', *[c for c in ('augmentation', 'config') if c in preds]]
    last = preds[(preds.selection == 'last') & ~preds.method.isin(BASELINE_ROWS)]
    ens = table[(table.run == 'seed ensemble') & (table.dataset == 'composite') & (table.metric == 'UF1')]
    arms = last.groupby(by).seed.nunique()
    assert (arms >= 2).any(), f'{adir.name}: no HTNet-family arm with several seeds'
    for key, n in arms[arms >= 2].items():
        key = key if isinstance(key, tuple) else (key,)
        row = ens[(ens[by].astype(str) == [str(k) for k in key]).all(axis=1)]
        assert len(row) == 1 and row.n_seeds.iloc[0] == n, f'{adir.name}: {dict(zip(by, key))} has no seed-ensemble row'
        arm = last[(last[by].astype(str) == [str(k) for k in key]).all(axis=1)]
        mean = arm.groupby('id')[['label', 'p0', 'p1', 'p2']].mean()
        want = f1_score(mean.label, mean[['p0', 'p1', 'p2']].to_numpy().argmax(1), average='macro')
        assert abs(row.value.iloc[0] - want) < 1e-9, f'{adir.name}: {dict(zip(by, key))} ensemble UF1 {row.value.iloc[0]} != {want}'


COMPARISON_FILES = sorted(RESULTS.glob('*/comparisons*.csv')) if RESULTS.is_dir() else []


@pytest.mark.parametrize('cf', COMPARISON_FILES, ids=[f'{f.parent.name}/{f.name}' for f in COMPARISON_FILES])
def test_primary_family_holm(cf):
    """Every committed comparison says its family; the primary one (UF1 on all samples under `last`) is Holm-corrected
    among its own rows only (Holm's step-down, written out here apart from `metrics.holm`), and so is the secondary one;
    each row states the smallest difference its design resolves."""
    import numpy as np
    def holm(p):
        p = np.asarray(p, float); order = np.argsort(p, kind='stable'); m = len(p)
        adj = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        out = np.empty(m); out[order] = adj
        return out
    c = pd.read_csv(cf)
    assert {'family', 'p_holm', 'mde'} <= set(c.columns), cf
    primary = c.dataset.isin(['composite', 'casme3']) & (c.selection == 'last') & (c.metric == 'UF1')
    assert (c.family == 'primary').eq(primary).all(), cf
    for fam, g in c.groupby('family'):
        assert np.allclose(g.p_holm, holm(g.p), atol=1e-12), (cf, fam)
    assert (c.mde >= 0).all() and ((c.verdict == 'not resolved') == (c.p_holm >= 0.05)).all(), cf


CONTROL_FILES = sorted(RESULTS.glob('*/*_controls.csv')) if RESULTS.is_dir() else []


def test_esaat_is_asked_where_it_has_a_choice():
    """A committed Table 5 runs at a depth where the removal rule has a choice (several removable sub-layers per run) with
    random controls drawn per fold, and says how often each control removed exactly ESAAT's set."""
    deep = [f for f in CONTROL_FILES if json.loads((f.parent / 'run.json').read_text())['parameters'].get('draws') == 'fold']
    assert deep, 'no committed Table 5 with controls drawn per fold'
    for f in deep:
        model = json.loads((f.parent / 'run.json').read_text())['preset']['model']
        assert sum(model['block_repeats']) - model['num_hierarchies'] >= 10, model     # the paper's depth: 11 removable


@pytest.mark.parametrize('cf', CONTROL_FILES, ids=[f.parent.name for f in CONTROL_FILES])
def test_controls_differ_from_esaat_where_they_can(cf):
    """Where the rule has a choice (several removable sub-layers, draws per fold) a random-removal control that equalled
    ESAAT in most runs could not tell the entropy criterion from chance: each control must differ from it in at least 80%
    of the (seed, fold) runs. The removal counts per sub-layer agree with the number of runs and the removed sets' size."""
    run = json.loads((cf.parent / 'run.json').read_text())
    model, draws = run['preset']['model'], run['parameters'].get('draws', 'seed')
    c = pd.read_csv(cf)
    assert len(c) >= 3 and c['method'].str.startswith('ESAAT-').all(), c
    folds = 68 if run['parameters'].get('protocol', 'loso') == 'loso' else run['parameters'].get('k', 5)
    assert (c['runs'] == folds * len(run['seeds'])).all() and ((c['share'] - c['same set as ESAAT'] / c['runs']).abs() < 1e-9).all(), c
    removed = pd.read_csv(cf.parent / f'{result_stem(cf.parent)}_removed.csv')
    assert (removed['folds'] == folds * len(run['seeds'])).all()
    per_run = removed['removed in folds'].sum() / removed['folds'].iloc[0]
    if sum(model['block_repeats']) - model['num_hierarchies'] >= 3 and draws == 'fold':
        assert per_run >= 3, per_run                              # several removed per run: each a choice among many
        assert (c['share'] <= 0.2).all(), c


def test_tuning_kept_the_outer_test_subjects_out():
    """The committed nested search (`results/tune`): in every (seed, outer fold, training configuration) inner fold
    record, no subject the tuned model was scored on in that outer fold; every outer training subject tested once per
    inner cross-validation; one chosen configuration per seed and outer fold, the best inner score; its comparisons."""
    adir = RESULTS / 'tune'
    if not adir.is_dir(): pytest.skip('no committed tune artefact')
    run = json.loads((adir / 'run.json').read_text())
    folds = pd.read_csv(adir / 'tune_folds.csv', dtype={'outer': str, 'train_subjects': str, 'test_subjects': str})
    choices, inner = (pd.read_csv(adir / f'tune_{k}.csv', dtype={'outer': str}) for k in ('choices', 'inner'))
    preds = pd.read_csv(adir / 'tune_predictions.csv.gz', dtype={'subject': str, 'fold': str})
    tuned = preds[preds.method == 'HTNet tuned']
    assert len(run['seeds']) >= 3 and set(tuned.seed) == set(run['seeds']) and tuned.groupby('seed').id.nunique().eq(442).all()
    for (seed, outer), g in tuned.groupby(['seed', 'fold']):
        f = folds[(folds.seed == seed) & (folds.outer == outer)]
        test_subjects, everyone = set(g.subject), set(preds.subject)
        assert len(f) and not any(set(f'{a} {b}'.split()) & test_subjects for a, b in zip(f.train_subjects, f.test_subjects)), (seed, outer)
        for _, cfg in f.groupby(['lr', 'mirror']):
            assert sorted(' '.join(cfg.test_subjects).split()) == sorted(everyone - test_subjects), (seed, outer)
    assert len(choices) == len(run['seeds']) * tuned.fold.nunique() and not choices.duplicated(['seed', 'outer']).any()
    best = inner.groupby(['seed', 'outer']).inner_uf1.max()
    assert (choices.set_index(['seed', 'outer']).inner_uf1 == best.loc[list(zip(choices.seed, choices.outer))].to_numpy()).all()
    c = pd.read_csv(adir / 'comparisons.csv')
    assert {'HTNet tuned vs HTNet', 'HTNet tuned seed ensemble vs HTNet seed ensemble',
            'HTNet tuned + baselines ensemble vs HTNet seed ensemble'} <= set(c.comparison)
    assert '**Targets**' in (adir / 'tune.md').read_text()
