"""Sharding that cannot deadlock: ranks (RANK/WORLD_SIZE, as torchrun sets them) started seconds apart, and a rank
killed midway. Every rank deals out all the folds the same way; a wait ends, after $MER_NB_SHARD_TIMEOUT seconds,
in one line naming the missing folds."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mer_nb.cv as CV
import mer_nb.recipe as R
from mer_nb.core import MerError
from test_scaleout import SCRIPT as SCALEOUT

# the toy set of tests/test_scaleout.py (6 subjects, so 6 LOSO folds), then `SLOW` seconds of sleep after each fold group
TOY = SCALEOUT.split('rank, world = CV.shard()')[0]
assert 'MERDataset(' in TOY
SCRIPT = TOY + textwrap.dedent('''
    import os, time
    fit, slow = CV._fit_group, float(os.environ.get('SLOW', 0))
    def paced(g):
        out = fit(g); time.sleep(slow); return out
    CV._fit_group = paced
    rank, world = CV.shard()
    try:
        preds = CV.run_cv(ds, R.get_preset('smoke', epochs=6, lr=3e-3), sys.argv[1], workers=1, progress=False, device='cpu',
                          fold_batch=1)
    except MerError as e:
        print(f'error: {e}', file=sys.stderr); sys.exit(2)
    preds.to_csv(f'{sys.argv[2]}/rank{rank}.csv', index=False)
''')
FOLDS = [f'sub-{s}' for s in range(6)]


def _start(tmp_path, rank, timeout, slow=0.0):
    env = {**os.environ, 'RANK': str(rank), 'WORLD_SIZE': '2', 'OMP_NUM_THREADS': '1', 'MER_NB_SHARD_TIMEOUT': str(timeout),
           'SLOW': str(slow)}
    return subprocess.Popen([sys.executable, str(tmp_path / 'run.py'), str(tmp_path / 'runs'), str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(tmp_path):
    return sorted((tmp_path / 'runs').rglob('*.npz'))


def _ranks(tmp_path):
    "{fold: the rank that trained it} of the records on disk."
    out = {}
    for p in _records(tmp_path):
        with np.load(p) as rec: out[p.stem] = int(rec['rank'])
    return out


def _wait_until(cond, seconds, what):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > seconds: raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.1)


@pytest.fixture
def script(tmp_path):
    (tmp_path / 'run.py').write_text(SCRIPT)
    procs = []
    yield procs
    for p in procs:   # never leave a rank behind
        if p.poll() is None: p.kill(); p.wait()


def test_ranks_started_seconds_apart_both_finish(tmp_path, script):
    "Rank 1 starts once rank 0 has written a record (and 2 s more): the old 'share the missing folds' rule left folds untrained."
    r0 = _start(tmp_path, 0, timeout=90, slow=0.5); script.append(r0)
    _wait_until(lambda: _records(tmp_path) or r0.poll() is not None, 90, 'the first record of rank 0')
    time.sleep(2)
    r1 = _start(tmp_path, 1, timeout=90); script.append(r1)
    out0, out1 = r0.communicate(timeout=120), r1.communicate(timeout=120)
    assert r0.returncode == 0, out0[1][-3000:]
    assert r1.returncode == 0, out1[1][-3000:]
    ranks = _ranks(tmp_path)
    assert sorted(ranks) == FOLDS and sorted(ranks.values()) == [0, 0, 0, 1, 1, 1]   # each fold trained once, 3 per rank
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 'rank0.csv'), pd.read_csv(tmp_path / 'rank1.csv'))


def test_a_rank_killed_midway_makes_the_other_time_out_naming_the_missing_folds(tmp_path, script):
    r1 = _start(tmp_path, 1, timeout=8, slow=30); script.append(r1)   # rank 1 writes one record, then dawdles
    _wait_until(lambda: 1 in _ranks(tmp_path).values() or r1.poll() is not None, 90, 'a record of rank 1')
    r0 = _start(tmp_path, 0, timeout=8); script.append(r0)
    r1.send_signal(signal.SIGKILL); r1.wait()                         # killed one fold into its share of three
    t0 = time.time()
    _, err = r0.communicate(timeout=120)
    assert r0.returncode == 2, err[-3000:]
    assert time.time() - t0 < 60
    line = err.strip().splitlines()[-1]
    assert line.startswith('error: [rank 0/2] gave up after 8 s waiting for 2 fold record(s) from other ranks: '), line
    missing = sorted(set(FOLDS) - {p.stem for p in _records(tmp_path)})
    assert len(missing) == 2 and all(m in line for m in missing), (missing, line)


@pytest.mark.parametrize('value', ['soon', '0', '-5', 'nan'])
def test_a_bad_timeout_is_refused_before_any_training(toy_dataset, tmp_path, monkeypatch, value):
    monkeypatch.setenv('RANK', '0'); monkeypatch.setenv('WORLD_SIZE', '2'); monkeypatch.setenv('MER_NB_SHARD_TIMEOUT', value)
    monkeypatch.setattr(CV, '_fit_group', lambda g: pytest.fail('trained before checking the timeout'))
    with pytest.raises(MerError, match=f"MER_NB_SHARD_TIMEOUT='{value}': expected a positive number of seconds"):
        CV.run_cv(toy_dataset, R.get_preset('smoke'), tmp_path, progress=False, device='cpu', workers=1)
