"""Fold-parallel training (mer_nb.foldpar): the same trainings as one fold at a time, through run_cv and on real data."""
import numpy as np
import pandas as pd
import pytest

import mer_nb.train as T
from mer_nb.foldpar import auto_fold_batch, train_folds

PRESET = T.get_preset('smoke', epochs=6, lr=3e-3)


def _records(path):
    out = {}
    for p in sorted(path.rglob('*.npz')):
        with np.load(p) as r: out[p.stem] = {k: r[k] for k in r.files}
    return out


def test_run_cv_fold_parallel_matches_one_at_a_time(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv('MER_NB_FOLD_BATCH', raising=False)
    seq = T.run_cv(toy_dataset, PRESET, tmp_path / 'seq', fold_batch=1, progress=False)
    par = T.run_cv(toy_dataset, PRESET, tmp_path / 'par', fold_batch=4, progress=False)   # 6 folds: groups of 4 and 2
    pd.testing.assert_frame_equal(seq.drop(columns=['p0', 'p1', 'p2']), par.drop(columns=['p0', 'p1', 'p2']))
    np.testing.assert_allclose(seq[['p0', 'p1', 'p2']], par[['p0', 'p1', 'p2']], atol=1e-4)
    rs, rp = _records(tmp_path / 'seq'), _records(tmp_path / 'par')
    assert sorted(int(r['fold_batch']) for r in rp.values()) == [2, 2, 4, 4, 4, 4]
    assert all('fold_batch' not in r for r in rs.values())
    for name in rs:
        np.testing.assert_allclose(rp[name]['test_logits'], rs[name]['test_logits'], atol=1e-4)
        np.testing.assert_allclose(rp[name]['train_loss'], rs[name]['train_loss'], rtol=1e-5)
        np.testing.assert_array_equal(rp[name]['train_idx'], rs[name]['train_idx'])


def test_fold_parallel_in_worker_processes_and_from_the_environment(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv('MER_NB_FOLD_BATCH', raising=False)
    seq = T.run_cv(toy_dataset, PRESET, tmp_path / 'seq', progress=False)
    monkeypatch.setenv('MER_NB_FOLD_BATCH', 'auto')
    par = T.run_cv(toy_dataset, PRESET, tmp_path / 'par', workers=2, device='cpu', progress=False)
    assert sorted(int(r['fold_batch']) for r in _records(tmp_path / 'par').values()) == [3] * 6   # 6 folds over 2 workers
    assert (seq.pred == par.pred).all()
    monkeypatch.setenv('MER_NB_FOLD_BATCH', 'many')
    with pytest.raises(T.MerError, match="fold_batch must be a positive integer or 'auto'"):
        T.run_cv(toy_dataset, PRESET, tmp_path / 'bad', progress=False)


def test_methods_that_cannot_be_batched_run_one_fold_at_a_time(toy_dataset, tmp_path):
    import mer_nb.baselines  # noqa: F401  (registers the baselines)
    assert T._fold_batch(8, [dict(method=T.get_method('LBP-TOP'))], 1, 'cpu') == 1     # scikit-learn
    assert auto_fold_batch(PRESET, 10, method='MobileViT') == 1                          # batch norm
    T.run_cv(toy_dataset, PRESET, tmp_path, method='STSTNet', fold_batch=3, progress=False)   # batch norm: one at a time
    recs = _records(tmp_path)
    assert len(recs) == 6 and all('fold_batch' not in r for r in recs.values())


def test_real_folds_one_full_batch_step_equals_sequential(composite_root):
    """First LOSO folds of the real composite, quick preset, one full-batch Adam step: the fold-parallel model equals the
    sequential one to float tolerance. (Adam's first steps are about lr * sign(gradient), so gradient entries at
    rounding level can move a weight by 2 * lr either way; longer runs drift apart chaotically, see 06a_foldpar.)"""
    from mer_nb.data import load_composite, model_input
    ds = load_composite(composite_root)
    x = model_input(ds)
    pre = T.get_preset('quick', epochs=1, batch_size=512)
    data = [(x[tr], ds.labels[tr], {'test': x[te]}) for _, tr, te in T.make_folds(ds.subjects)[:4]]
    par = train_folds(data, pre, seed=0)
    for (xt, yt, ev), (logs, losses) in zip(data, par):
        ref_logs, ref_losses, _ = T.train_fold(xt, yt, ev, pre, seed=0, device='cpu')
        np.testing.assert_allclose(logs['test'], ref_logs['test'], atol=1e-3)
        assert (logs['test'].argmax(-1) == ref_logs['test'].argmax(-1)).all()
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
