"""CAS(ME)^3 part A: the real label CSV's structure; the loader on drawn frames in its layout; the flow cache; data check."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mer_nb.clips
from mer_nb.cli import main
from mer_nb.sources import casme3_table, check_data, load_casme3, write_synthetic_casme3


def test_real_casme3_csv_structure(composite_root):
    csv = composite_root / 'casme3_part_a_labels.csv'
    df = pd.read_csv(csv)
    assert len(df) == 687 and df.Subject.nunique() == 87
    assert df.label_for_3.value_counts().to_dict() == {0: 449, 2: 184, 1: 54}
    ok, bad = casme3_table(csv)
    assert len(ok) == 686 and ok.subject.nunique() == 87
    assert bad.to_dict('records') == [{'line': 102, 'id': 'spNO.149_d_83', 'problem': 'onset 112 after apex 83'}]
    assert ok.id.is_unique


def test_casme3_loader_on_synthetic_frames_reports_bad_rows(tmp_path, capsys):
    csv = write_synthetic_casme3(tmp_path / 'casme3', n_subjects=2, per_class=1, bad_rows=True)
    ds, skipped = load_casme3(csv, method='farneback', cache=tmp_path / 'cache', progress=False)
    out = capsys.readouterr().out
    assert len(ds) == 6 and set(ds.datasets) == {'casme3'} and ds.subjects.tolist() == ['spNO.1'] * 3 + ['spNO.2'] * 3
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2] and ds.flows.shape == (6, 3, 28, 28) and ds.landmarks.shape == (6, 5, 2)
    assert skipped.line.tolist() == [8, 9, 9, 10, 10]
    assert skipped.problem[0] == 'onset 14 after apex 10'
    assert 'skipped 3 of 9 rows' in out and 'onset 14 after apex 10' in out and 'missing onset frame' in out   # printed, not silent
    assert 'no face detected in' in out


def test_flow_cache_second_run_computes_nothing(tmp_path, monkeypatch):
    csv = write_synthetic_casme3(tmp_path / 'c3', n_subjects=1, per_class=1)
    calls = []
    real = mer_nb.clips.clip_sample
    monkeypatch.setattr(mer_nb.clips, 'clip_sample', lambda *a, **k: calls.append(1) or real(*a, **k))
    ds1, _ = load_casme3(csv, method='farneback', cache=tmp_path / 'cache', progress=False, verbose=False)
    assert len(calls) == 3
    ds2, _ = load_casme3(csv, method='farneback', cache=tmp_path / 'cache', progress=False, verbose=False)
    assert len(calls) == 3                                            # all read from the cache
    np.testing.assert_array_equal(ds1.flows, ds2.flows); np.testing.assert_array_equal(ds1.landmarks, ds2.landmarks)
    load_casme3(csv, method='farneback', size=14, cache=tmp_path / 'cache', progress=False, verbose=False)
    assert len(calls) == 6                                            # other parameters: recomputed


def test_data_check_lists_every_problem(tmp_path, capsys):
    csv = write_synthetic_casme3(tmp_path, n_subjects=2, per_class=1, bad_rows=True)
    (tmp_path / 'spNO.2' / 'e' / 'color' / '10.jpg').write_bytes(b'not a jpeg')
    probs = check_data(csv)
    assert len(probs) == 6, probs
    for s in ('line 6 (spNO.2_e_', 'onset 14 after apex 10', 'missing onset frame', 'missing apex frame', "unknown label_for_3 '7'", 'duplicate id'):
        assert any(s in p for p in probs), s
    assert main(['data', 'check', str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count(str(csv)) == 6 and '6 problem(s)' in out


def test_data_check_composite(composite_root, capsys):
    assert main(['data', 'check', str(composite_root)]) == 0
    assert 'no problems' in capsys.readouterr().out


def test_real_composite_folder_is_read_as_the_composite(composite_root):
    """The composite folder also holds casme3_part_a_labels.csv; its labels.csv decides what the folder is, for every
    entry point alike."""
    from mer_nb.sources import find_dataset
    assert find_dataset(composite_root) == ('composite', composite_root)
    assert find_dataset(composite_root / 'casme3_part_a_labels.csv') == ('casme3', composite_root / 'casme3_part_a_labels.csv')


def test_entry_points_share_one_reading_of_data(tmp_path):
    """The experiments (`Experiment`), Table 2 and `mer-nb train` read a data argument through one `open_dataset`: they accept and refuse the same paths."""
    from mer_nb.core import MerError
    from mer_nb.experiments import Experiment
    from mer_nb.augment import table2_data_line
    from mer_nb.predict import load_training_data
    from mer_nb.sources import find_dataset, open_dataset
    csv = write_synthetic_casme3(tmp_path / 'c3', n_subjects=1, per_class=1)
    assert find_dataset(tmp_path / 'c3') == ('casme3', csv)
    exp = Experiment.create('smoke', tmp_path / 'c3', tmp_path / 'out', flow_method='farneback', runs=tmp_path / 'runs',
                            progress=False, kinds=('synthetic', 'composite', 'casme3'))
    ds = exp.dataset()
    assert len(ds) == 3 and set(ds.datasets) == {'casme3'}
    assert table2_data_line(ds, 'farneback').startswith('**Data**: CAS(ME)^3 part A (casme3_part_a_labels.csv; 0 label rows skipped)')
    with pytest.raises(MerError, match='a CAS\\(ME\\)\\^3 label CSV, but this experiment runs on a composite-layout folder'):
        Experiment.create('smoke', tmp_path / 'c3', tmp_path / 'out')
    for load in (lambda p: Experiment.create('smoke', p, tmp_path / 'out'), open_dataset, load_training_data):
        with pytest.raises(MerError, match='nothing: no such file or folder'): load(tmp_path / 'nothing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(MerError, match='--data .*empty: not a dataset'): load_training_data(tmp_path / 'empty')
