"""A run that goes wrong says so, and a run touches only what it should: non-finite options and diverged training,
$HOME, torchrun's index, staging folders left by a killed run, --out inside the data, and papermill used directly."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / 'nbs' / 'experiments'


def _mer_nb(*args, env=None, cwd=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'mer_nb', *args], capture_output=True, text=True, env=env or os.environ.copy(),
                          cwd=cwd or ROOT, timeout=timeout)


def _one_error_line(r, *parts):
    "Exit 2 and one error line, the last on stderr (progress bars may come before it), with no traceback."
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines and lines[-1].startswith('mer-nb: error: ') and 'Traceback' not in r.stderr, (r.returncode, r.stderr)
    assert sum(l.startswith('mer-nb: error: ') for l in lines) == 1, r.stderr
    for p in parts: assert p in lines[-1], lines[-1]
    return lines[-1]


@pytest.mark.parametrize('value', ['Infinity', '1e400', 'NaN', '-1e-3'])
def test_non_finite_or_negative_lr_is_refused(tmp_path, value):
    r = _mer_nb('reproduce', '--preset', 'smoke', '--only', 'fig1', '--set', f'lr={value}', '--out', str(tmp_path / 'o'))
    shown = {'Infinity': 'Infinity', '1e400': 'Infinity', 'NaN': 'NaN', '-1e-3': '-0.001'}[value]   # as JSON reads it
    _one_error_line(r, f'--set lr={shown}: expected a finite number >= 0')
    assert not (tmp_path / 'o').exists()


def test_seeds_with_a_non_ascii_digit_names_the_option(tmp_path):
    _one_error_line(_mer_nb('reproduce', '--preset', 'smoke', '--only', 'fig1', '--seeds', '\u00b2', '--out', str(tmp_path)),
                    "--seeds \u00b2: '\u00b2' is not a seed")


def test_diverged_training_publishes_nothing(tmp_path):
    """lr 1e30 (finite, accepted) blows the weights up: the run stops with one line naming method, seed, fold and epoch,
    and no table is written (before, the arg max of NaN gave class 0 and a normal-looking UF1 of 0.1667)."""
    out = tmp_path / 'o'
    r = _mer_nb('reproduce', '--preset', 'smoke', '--only', 'table4', '--param', 'configs=["preset"]', '--set', 'lr=1e30', '--out', str(out))
    line = _one_error_line(r, 'the loss or the logits are not finite from epoch 1 of 3', 'seed 0, fold sub-syn0')
    assert 'HTNet' in line, line
    assert not list(out.rglob('table4.md')) and not list(out.rglob('table4.csv')) and not list(out.rglob('*.npz'))


def test_home_gets_nothing_but_the_stated_cache(tmp_path):
    "A fresh $HOME: matplotlib's and IPython's files go to the stated cache (~/.cache/mer_nb), nothing else is written."
    home = tmp_path / 'home'; home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ('MER_NB_CACHE', 'MPLCONFIGDIR', 'IPYTHONDIR')}
    r = _mer_nb('reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', str(tmp_path / 'o'), env={**env, 'HOME': str(home)})
    assert r.returncode == 0, r.stderr
    top = sorted(str(p.relative_to(home)) for p in home.rglob('*') if len(p.relative_to(home).parts) <= 2)
    assert top == ['.cache', '.cache/mer_nb'], top


def test_one_index_writer_under_torchrun(tmp_path):
    "Rank 1 of 2 writes its artefact into <out>/<name>/rank1 and leaves <out>/index.md to rank 0."
    out = tmp_path / 'o'
    r = _mer_nb('reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', str(out), env={**os.environ, 'RANK': '1', 'WORLD_SIZE': '2'})
    assert r.returncode == 0, r.stderr
    assert (out / 'fig1' / 'rank1' / 'fig1.md').is_file() and not (out / 'index.md').exists()


def test_staging_folder_of_a_killed_run_is_cleaned(tmp_path):
    "A run killed with SIGKILL leaves .<name>.partial-<pid>; the next run removes it (its process is gone), not a live one's."
    out = tmp_path / 'o'; out.mkdir()
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    stale, live = out / f'.fig1.partial-{dead.pid}', out / f'.fig1.partial-{os.getpid()}'
    for d in (stale, live): d.mkdir(); (d / 'x.csv').write_text('half written')
    r = _mer_nb('reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', str(out))
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and live.exists() and (out / 'fig1' / 'fig1.md').is_file()


def test_out_inside_the_dataset_is_refused(tmp_path):
    data = tmp_path / 'data'; (data / 'flow_uv_os').mkdir(parents=True)
    (data / 'labels.csv').write_text('dataset,sub,filename_o,label,imagename\n')
    before = sorted(p.name for p in data.rglob('*'))
    for opt in ('--out', '--results'):
        args = ['--out', str(tmp_path / 'o')] if opt == '--results' else []
        r = _mer_nb('reproduce', '--preset', 'smoke', '--only', 'fig1', '--data', str(data), opt, str(data / 'reports'), *args)
        _one_error_line(r, f'{opt} {data / "reports"}: inside the dataset folder {data}')
    assert sorted(p.name for p in data.rglob('*')) == before


def _papermill(tmp_path, *args):
    return subprocess.run([sys.executable, '-m', 'papermill', str(NB / 'table4_lape.ipynb'), str(tmp_path / 'run.ipynb'), '--cwd', str(tmp_path),
                           '-p', 'preset', 'smoke', '-p', 'out', str(tmp_path / 't4'), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize('how', [('-p', 'seeds', '0,1', '-p', 'configs', 'preset', '-p', 'positions', 'lape,none'),
                                 ('-y', 'seeds: [0, 1]\nconfigs: [preset]\npositions: [lape, none]'),
                                 ('-p', 'seeds', '[0, 1]', '-p', 'configs', '["preset"]', '-p', 'positions', '["lape", "none"]')],
                         ids=['p-text', 'y-yaml', 'p-json'])
def test_papermill_direct_lists_and_run_json(tmp_path, how):
    """papermill's -p gives text (or a number), -y gives YAML: each form means the list a user expects, and a direct run
    writes run.json like `mer-nb reproduce`."""
    r = _papermill(tmp_path, *how)
    assert r.returncode == 0, r.stderr[-3000:]
    run = json.loads((tmp_path / 't4' / 'run.json').read_text())
    assert run['seeds'] == [0, 1] and run['artefact'] == 'table4' and run['preset']['name'] == 'smoke' and run['command'].startswith('papermill')
    assert run['fold_records'] > 0 and run['versions']['torch'] and 'isa' in run['cpu']
    t = (tmp_path / 't4' / 'table4.csv').read_text()
    assert 'HTNet+LAPE' in t and 'no position term' in t and 'scalar' not in t


def test_papermill_direct_bad_value_is_one_clear_error(tmp_path):
    r = _papermill(tmp_path, '-p', 'seeds', 'a')
    assert r.returncode != 0
    nb = json.loads((tmp_path / 'run.ipynb').read_text())
    err = [o for c in nb['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert len(err) == 1 and err[0]['ename'] == 'MerError' and err[0]['evalue'].startswith("seeds a: 'a' is not a seed"), err
    assert len(err[0]['traceback']) <= 2, err[0]['traceback']          # the message, not a traceback through mer_nb


def test_every_notebook_parameter_is_described_and_defaults_agree():
    import papermill as pm
    for nb in sorted(NB.glob('*.ipynb')):
        params = pm.inspect_notebook(str(nb))
        assert all(p['help'] for p in params.values()), (nb.name, [n for n, p in params.items() if not p['help']])
        assert params['preset']['default'] == "'quick'", nb.name            # as `mer-nb reproduce` and Experiment.create
