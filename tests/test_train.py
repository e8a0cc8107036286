"""The trainer: leak guards, determinism, resumable runs, process-parallel folds."""
import numpy as np
import pandas as pd
import pytest

import mer_nb.recipe as R
import mer_nb.cv as CV
import mer_nb.train as T
from mer_nb.metrics import uf1

PRESET = R.get_preset('smoke', epochs=6, lr=3e-3)


def test_folds_never_share_a_subject(toy_dataset):
    for protocol in ('loso', 'kfold'):
        folds = CV.make_folds(toy_dataset.subjects, protocol, k=3)
        seen = []
        for _, tr, te in folds:
            assert not set(toy_dataset.subjects[tr]) & set(toy_dataset.subjects[te])
            seen.extend(te)
        assert sorted(seen) == list(range(len(toy_dataset)))  # every sample is tested exactly once


def test_leak_guard_fires_inside_training(toy_dataset, tmp_path):
    x = np.zeros((len(toy_dataset), 3, 28, 28), np.float32)
    job = dict(x=x, y=toy_dataset.labels, subjects=toy_dataset.subjects, train=np.arange(0, 10), test=np.arange(8, 16),
               fold='bad', seed=0, regime='full', preset=PRESET, model_kw=None, device='cpu', path=tmp_path / 'x.npz', progress=False,
               method=R.get_method('HTNet'))
    with pytest.raises(AssertionError, match='subject leakage in bad'):
        CV._fit_job(job)
    assert not (tmp_path / 'x.npz').exists()


def test_same_seed_same_predictions(toy_dataset, tmp_path):
    a = CV.run_cv(toy_dataset, PRESET, tmp_path / 'a', progress=False)
    b = CV.run_cv(toy_dataset, PRESET, tmp_path / 'b', progress=False)
    pd.testing.assert_frame_equal(a, b)
    c = CV.run_cv(toy_dataset, PRESET, tmp_path / 'c', seeds=(1,), progress=False)
    assert not np.allclose(a.p0.to_numpy(), c.p0.to_numpy())


class Killed(Exception):
    """Stands for the process being killed (SIGKILL cannot be caught, so the run just stops there)."""


def test_killed_run_resumes_without_recomputing(toy_dataset, tmp_path, monkeypatch):
    full = CV.run_cv(toy_dataset, PRESET, tmp_path / 'ref', progress=False)
    real, calls, kill = CV._fit_job, [], [True]

    def killed_at_third(job):
        calls.append(job['fold'])
        if kill[0] and len(calls) == 3:
            raise Killed  # the process is killed while the third fold trains
        return real(job)

    monkeypatch.setattr(CV, '_fit_job', killed_at_third)
    with pytest.raises(Killed):     # one fold at a time (a fold-parallel group writes its folds when the group ends)
        CV.run_cv(toy_dataset, PRESET, tmp_path / 'run', progress=False, fold_batch=1)
    done = sorted(p.stem for p in (tmp_path / 'run').rglob('*.npz'))
    assert done == sorted(calls[:2]) and not list((tmp_path / 'run').rglob('*.tmp'))

    calls.clear(); kill[0] = False
    resumed = CV.run_cv(toy_dataset, PRESET, tmp_path / 'run', progress=False, fold_batch=1)
    assert len(calls) == 6 - 2 and not set(calls) & set(done)  # finished folds are read, not retrained
    pd.testing.assert_frame_equal(resumed, full)                # and nothing is lost


def test_changed_config_does_not_reuse_folds(toy_dataset, tmp_path):
    CV.run_cv(toy_dataset, PRESET, tmp_path, progress=False)
    CV.run_cv(toy_dataset, R.get_preset(PRESET, lr=1e-3), tmp_path, progress=False)
    assert len({p.parent.parent for p in tmp_path.rglob('*.npz')}) == 2


def test_selection_modes_and_learning(toy_dataset, tmp_path):
    preds = CV.run_cv(toy_dataset, R.get_preset(PRESET, epochs=20), tmp_path, selections=T.SELECTIONS, progress=False)
    assert set(preds.selection) == set(T.SELECTIONS)
    for sel, g in preds.groupby('selection'):
        assert len(g) == len(toy_dataset) and g.id.is_unique
        assert uf1(g.label, g.pred) > 0.7, (sel, uf1(g.label, g.pred))  # chance is about 1/3
    last = preds[preds.selection == 'last']
    assert (last.epoch == 20).all()


def test_worker_processes_give_identical_predictions(toy_dataset, tmp_path):
    seq = CV.run_cv(toy_dataset, PRESET, tmp_path / 'seq', workers=1, progress=False)
    par = CV.run_cv(toy_dataset, PRESET, tmp_path / 'par', workers=2, device='cpu', progress=False)
    pd.testing.assert_frame_equal(seq, par)
