"""`mer-nb reproduce` runs the papermill experiment notebooks and writes the promised files."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mer_nb.cli import reproduce

COLUMNS = ['method', 'selection', 'run', 'protocol', 'dataset', 'metric', 'value', 'std', 'n_seeds', 'n_samples', 'ci_low', 'ci_high']


def _check(adir, datasets):
    for f in ('table1.csv', 'table1.md', 'table1_confusion.png', 'run.json', 'table1_sota.ipynb'):
        assert (adir / f).is_file(), f
    t = pd.read_csv(adir / 'table1.csv')
    assert list(t.columns[:len(COLUMNS)]) == COLUMNS
    ours = t[t.run == 'ours']
    assert set(ours.selection) == {'last', 'best-on-test'}
    assert set(ours.dataset) == set(datasets) and set(ours.metric) == {'UF1', 'UAR'}
    assert ours.value.between(0, 1).all() and (ours.ci_low <= ours.value + 1e-9).all() and (ours.value <= ours.ci_high + 1e-9).all()
    assert len(ours) == 2 * len(datasets) * 2
    run = json.loads((adir / 'run.json').read_text())
    assert run['preset']['name'] == 'smoke' and run['seeds'] == [0] and run['wall_seconds']['table1'] > 0
    assert run['versions']['torch'] and run['device'] in ('cpu', 'cuda')
    md = (adir / 'table1.md').read_text()
    assert 'leave-one-subject-out' in md and 'LEAKY' in md
    return t


def test_table1_smoke_synthetic(tmp_path):
    reproduce('smoke', None, 'table1', tmp_path, log_output=False)
    t = _check(tmp_path / 'table1', {'composite'})
    assert not (t.run == 'reported').any()  # published numbers only beside the data they were measured on


def test_table1_smoke_real_composite(tmp_path, composite_root):
    reproduce('smoke', composite_root, 'table1', tmp_path, log_output=False)
    t = _check(tmp_path / 'table1', {'composite', 'smic', 'samm', 'casme2'})
    rep = t[t.run == 'reported'].set_index(['dataset', 'metric']).value
    assert rep[('composite', 'UF1')] == 0.8603 and rep[('samm', 'UAR')] == 0.8124


def test_cli_bad_data_is_one_line(tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent / 'mer-nb'), 'reproduce', '--data', str(tmp_path / 'nope'), '--out', str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'no such folder' in r.stderr, r.stderr
