"""Fold-parallel training (mer_nb.foldpar): bit for bit the trainings of one fold at a time, through run_cv and on real data."""
import os
import platform
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import mer_nb.recipe as R
import mer_nb.cv as CV
from mer_nb.core import MerError
import mer_nb.train as T
from mer_nb.foldpar import auto_fold_batch, train_folds

PRESET = R.get_preset('smoke', epochs=6, lr=3e-3)


def _records(path):
    out = {}
    for p in sorted(path.rglob('*.npz')):
        with np.load(p) as r: out[p.stem] = {k: r[k] for k in r.files}
    return out


def test_run_cv_fold_parallel_equals_one_at_a_time(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv('MER_NB_FOLD_BATCH', raising=False)
    seq = CV.run_cv(toy_dataset, PRESET, tmp_path / 'seq', fold_batch=1, progress=False)
    par = CV.run_cv(toy_dataset, PRESET, tmp_path / 'par', fold_batch=4, progress=False)   # 6 folds: groups of 4 and 2
    pd.testing.assert_frame_equal(seq, par, check_exact=True)
    rs, rp = _records(tmp_path / 'seq'), _records(tmp_path / 'par')
    assert sorted(int(r['fold_batch']) for r in rp.values()) == [2, 2, 4, 4, 4, 4]
    assert all('fold_batch' not in r for r in rs.values())
    for name in rs:
        for k in ('test_logits', 'train_loss', 'train_idx', 'test_idx'):
            np.testing.assert_array_equal(rp[name][k], rs[name][k], err_msg=f'{name}: {k}')


def test_default_is_fold_parallel_in_worker_processes(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv('MER_NB_FOLD_BATCH', raising=False)
    seq = CV.run_cv(toy_dataset, PRESET, tmp_path / 'seq', fold_batch=1, progress=False)
    par = CV.run_cv(toy_dataset, PRESET, tmp_path / 'par', workers=2, device='cpu', progress=False)    # default: 'auto'
    assert sorted(int(r['fold_batch']) for r in _records(tmp_path / 'par').values()) == [3] * 6   # 6 folds over 2 workers
    pd.testing.assert_frame_equal(seq, par, check_exact=True)
    monkeypatch.setenv('MER_NB_FOLD_BATCH', '1')
    CV.run_cv(toy_dataset, PRESET, tmp_path / 'env', workers=1, progress=False)
    assert all('fold_batch' not in r for r in _records(tmp_path / 'env').values())
    monkeypatch.setenv('MER_NB_FOLD_BATCH', 'many')
    with pytest.raises(MerError, match="fold_batch must be a positive integer or 'auto'"):
        CV.run_cv(toy_dataset, PRESET, tmp_path / 'bad', progress=False)


def test_methods_that_cannot_be_batched_run_one_fold_at_a_time(toy_dataset, tmp_path):
    import mer_nb.baselines  # noqa: F401  (registers the baselines)
    assert CV._fold_batch(8, [dict(method=R.get_method('LBP-TOP'))], 1, 'cpu') == 1     # scikit-learn
    assert auto_fold_batch(PRESET, 10, method='MobileViT') == 1                          # batch norm
    assert auto_fold_batch(PRESET, 10, model_kw=dict(attention='agent')) == 1           # agent attention
    CV.run_cv(toy_dataset, PRESET, tmp_path, method='STSTNet', fold_batch=3, progress=False)   # batch norm: one at a time
    recs = _records(tmp_path)
    assert len(recs) == 6 and all('fold_batch' not in r for r in recs.values())


@pytest.mark.parametrize('preset, model_kw, n_folds', [
    (R.get_preset('quick', epochs=3), {}, 4),                                              # 1 token per block (the preset)
    (R.get_preset('quick', epochs=2), dict(patch_size=2, num_hierarchies=2, dim=8, block_repeats=(1, 2), pos_emb='lape'), 2),  # 49
])
def test_real_folds_bit_identical_to_train_fold(composite_root, preset, model_kw, n_folds):
    """The first LOSO folds of the real composite (different training-set sizes, so ragged last batches and folds
    that sit out a step): every epoch's test logits and training loss equal train_fold's exactly."""
    from mer_nb.data import load_composite, model_input
    ds = load_composite(composite_root)
    x = model_input(ds)
    folds = CV.make_folds(ds.subjects)
    folds = [folds[i] for i in np.argsort([len(tr) for _, tr, _ in folds])[[0, -1, 1, -2][:n_folds]]]   # smallest and largest
    assert len({len(tr) // preset.batch_size for _, tr, _ in folds}) > 1        # some fold has fewer batches per epoch
    data = [(x[tr], ds.labels[tr], {'test': x[te]}) for _, tr, te in folds]
    par = train_folds(data, preset, seed=0, model_kw=model_kw)
    for (xt, yt, ev), (logs, losses) in zip(data, par):
        ref_logs, ref_losses, _ = T.train_fold(xt, yt, ev, preset, seed=0, device='cpu', model_kw=model_kw)
        np.testing.assert_array_equal(logs['test'], ref_logs['test'])
        np.testing.assert_array_equal(losses, ref_losses)


def _toy_folds(toy_dataset):
    x = toy_dataset.flows.astype(np.float32)
    return [(x[tr], toy_dataset.labels[tr], {'test': x[te]}) for _, tr, te in CV.make_folds(toy_dataset.subjects)[:3]]


@pytest.mark.parametrize('kernel', ['compiled', 'torch operations'])
def test_both_adam_paths_bit_identical_to_train_fold(toy_dataset, monkeypatch, kernel):
    """The compiled one-pass Adam (where the machine has it) and the fallback on torch's operations both give every
    fold exactly train_fold's logits and losses."""
    import mer_nb.foldpar as FP
    if kernel == 'compiled' and FP.fused_adam() is None: pytest.skip(f"no compiled Adam here: {FP._FUSED['why']}")
    if kernel != 'compiled': monkeypatch.setattr(FP, '_FUSED', {'fn': None, 'why': 'switched off by this test'})
    data = _toy_folds(toy_dataset)
    pre = R.get_preset(PRESET, class_weight='balanced', weight_decay=1e-4)
    for (logs, losses), (xt, yt, ev) in zip(train_folds(data, pre, seed=0), data):
        ref_logs, ref_losses, _ = T.train_fold(xt, yt, ev, pre, seed=0, device='cpu')
        np.testing.assert_array_equal(logs['test'], ref_logs['test'])
        np.testing.assert_array_equal(losses, ref_losses)


def test_compiled_adam_is_used_where_it_can_be_built():
    """On x86-64 with AVX2, a C compiler and torch's MKL, fold-parallel training must not silently fall back to the
    slower Adam (a torch upgrade that changed a rounding would show up here, not only as lost speed)."""
    import mer_nb.foldpar as FP
    if platform.machine().lower() not in ('x86_64', 'amd64') or torch.backends.cpu.get_cpu_capability() not in ('AVX2', 'AVX512'):
        pytest.skip(f'the kernel is written for x86-64 with AVX2, this is {platform.machine()}')
    if shutil.which('cc') is None: pytest.skip('no C compiler (cc) on this machine')
    if not torch.backends.mkl.is_available(): pytest.skip('this torch has no MKL')
    if os.environ.get('MER_NB_FUSED_ADAM') == '0': pytest.skip('switched off by MER_NB_FUSED_ADAM=0')
    assert FP.fused_adam() is not None, FP._FUSED['why']



def _same_records(seq, par) -> list:
    """Every fold record under `par` equals the one under `seq` bit for bit, array by array (all but `seconds` and
    `fold_batch`, which only the fold-parallel record has); returns the fold_batch of each."""
    rs = {p.relative_to(seq): p for p in seq.rglob('*.npz')}
    assert rs and sorted(rs) == sorted(p.relative_to(par) for p in par.rglob('*.npz'))
    sizes = []
    for rel, p in rs.items():
        with np.load(p) as a, np.load(par / rel) as b:
            assert 'fold_batch' not in a.files
            sizes.append(int(b['fold_batch']))
            assert sorted(a.files) == sorted(set(b.files) - {'fold_batch'})
            for k in a.files:
                if k != 'seconds': np.testing.assert_array_equal(b[k], a[k], err_msg=f'{rel}: {k}')
    return sorted(sizes)


def test_run_cv_seeds_batched_equals_one_at_a_time(toy_dataset, tmp_path, monkeypatch):
    """Fold x seed groups: three seeds' folds mixed in one batched computation give every record, bit for bit, what
    each (fold, seed) gets trained alone."""
    monkeypatch.delenv('MER_NB_FOLD_BATCH', raising=False)
    seq = CV.run_cv(toy_dataset, PRESET, tmp_path / 'seq', seeds=(0, 1, 2), fold_batch=1, progress=False)
    par = CV.run_cv(toy_dataset, PRESET, tmp_path / 'par', seeds=(0, 1, 2), fold_batch=8, progress=False)  # 18 jobs: 8, 8, 2
    pd.testing.assert_frame_equal(seq, par, check_exact=True)
    assert _same_records(tmp_path / 'seq', tmp_path / 'par') == [2] * 2 + [8] * 16
    assert not np.array_equal(seq[seq.seed == 0].p0, seq[seq.seed == 1].p0)      # the seeds do differ


def test_esaat_base_training_batched_equals_one_at_a_time(toy_dataset, tmp_path, monkeypatch):
    """ESAAT: the HTNet+LAPE training before its post_train step runs fold-parallel (two seeds' folds mixed), then
    each fold's scoring, pruning, agent attention and fine-tuning on its own model: every record (fine-tuned logits,
    removed sub-layers, scores, parameter counts, the base model's last logits) equals one fold at a time's bit for bit."""
    import mer_nb.esaat as E
    from mer_nb.data import model_input
    from mer_nb.htnet import HTNet
    monkeypatch.delenv('MER_NB_FOLD_BATCH', raising=False)
    R.register_method('ESAAT-fp', R.Method(HTNet, model_input, 'torch', True, post_train=E.ESAAT(target=0.05, k=4, finetune=0.5)))
    try:
        pre = R.get_preset('smoke', model=dict(image_size=28, patch_size=7, dim=8, heads=2, num_hierarchies=2, block_repeats=(2, 2)),
                           epochs=4, lr=3e-3)
        kw = dict(method='ESAAT-fp', model_kw=dict(pos_emb='lape'), seeds=(0, 1), progress=False)
        assert CV._fold_batch('auto', [dict(method=R.get_method('ESAAT-fp'), preset=pre, model_kw=kw['model_kw'])] * 12, 1, 'cpu') > 1
        seq = CV.run_cv(toy_dataset, pre, tmp_path / 'seq', fold_batch=1, **kw)
        par = CV.run_cv(toy_dataset, pre, tmp_path / 'par', fold_batch=5, **kw)       # 12 jobs: 5, 5, 2
    finally:
        del R.METHODS['ESAAT-fp']
    pd.testing.assert_frame_equal(seq, par, check_exact=True)
    assert _same_records(tmp_path / 'seq', tmp_path / 'par') == [2] * 2 + [5] * 10
    with np.load(next((tmp_path / 'par').rglob('*.npz'))) as r:
        assert 'post_removed' in r.files and len(r['post_removed']) and r['test_logits'].shape[0] == 2


@pytest.mark.parametrize('method, model_kw', [('STSTNet', None), ('OFF-ApexNet', None), ('MobileViT', None), ('HTNet', dict(attention='agent'))])
def test_one_pass_adam_bit_identical_to_torch_adam(toy_dataset, method, model_kw):
    """The models run_cv trains one fold at a time (batch norm, dropout, agent attention) step with foldpar.fast_adam:
    every epoch's logits, the losses and the trained weights equal torch.optim.Adam's bit for bit."""
    import mer_nb.baselines  # noqa: F401
    import mer_nb.foldpar as FP
    if FP.fused_adam() is None: pytest.skip(f"no compiled Adam here: {FP._FUSED['why']}")
    x = R.get_method(method).inputs(toy_dataset).astype(np.float32)
    y = toy_dataset.labels
    pre = R.get_preset('smoke', epochs=2, batch_size=16, weight_decay=1e-4)
    ref = T.train_fold(x[:40], y[:40], {'test': x[40:]}, pre, seed=1, device='cpu', method=method, model_kw=model_kw)
    one = T.train_fold(x[:40], y[:40], {'test': x[40:]}, pre, seed=1, device='cpu', method=method, model_kw=model_kw, optimizer=FP.fast_adam)
    assert isinstance(FP.fast_adam(one[2].parameters()), FP.OnePassAdam)
    np.testing.assert_array_equal(one[0]['test'], ref[0]['test'])
    np.testing.assert_array_equal(one[1], ref[1])
    for (k, p), q in zip(one[2].named_parameters(), ref[2].parameters()):
        assert torch.equal(p, q), k


def test_run_cv_baseline_records_unchanged_by_one_pass_adam(toy_dataset, tmp_path, monkeypatch):
    "run_cv's one-fold-at-a-time records (STSTNet, two seeds) are bit for bit those of torch.optim.Adam (the kernel switched off)."
    import mer_nb.baselines  # noqa: F401
    import mer_nb.foldpar as FP
    if FP.fused_adam() is None: pytest.skip(f"no compiled Adam here: {FP._FUSED['why']}")
    kw = dict(method='STSTNet', seeds=(0, 1), workers=1, progress=False)
    CV.run_cv(toy_dataset, PRESET, tmp_path / 'par', **kw)
    monkeypatch.setattr(FP, '_FUSED', {'fn': None, 'why': 'switched off by this test'})
    CV.run_cv(toy_dataset, PRESET, tmp_path / 'seq', **kw)
    recs = list((tmp_path / 'par').rglob('*.npz'))
    assert len(recs) == 12
    for p in recs:
        with np.load(p) as a, np.load(tmp_path / 'seq' / p.relative_to(tmp_path / 'par')) as b:
            assert sorted(a.files) == sorted(b.files) and 'fold_batch' not in a.files
            for k in set(a.files) - {'seconds'}: np.testing.assert_array_equal(a[k], b[k], err_msg=f'{p.name}: {k}')


def test_siblings_share_one_training_bit_identical(toy_dataset, tmp_path, monkeypatch):
    """HTNet+LAPE, ESAAT and its two controls from one training per fold (`run_cv(siblings=)`, folds batched, two seeds):
    every record equals, bit for bit, the one each method's own run gets trained one fold at a time; the siblings'
    own run_cv calls then train nothing; a missing sibling record is trained again alone, the others left as they are."""
    import mer_nb.esaat as E
    from mer_nb.data import model_input
    from mer_nb.htnet import HTNet
    monkeypatch.delenv('MER_NB_FOLD_BATCH', raising=False)
    step = dict(target=0.05, k=4, finetune=0.5)
    # 'none' first: it fine-tunes the model it is given in place, so the steps after it would see its weights were it not a copy
    fam = {'ESAAT-sb-n': E.ESAAT(**step, criterion='none'), 'ESAAT-sb': E.ESAAT(**step), 'ESAAT-sb-r': E.ESAAT(**step, criterion='random', draw=1)}
    for name, st in fam.items(): R.register_method(name, R.Method(HTNet, model_input, 'torch', True, post_train=st))
    pre = R.get_preset('smoke', model=dict(image_size=28, patch_size=7, dim=8, heads=2, num_hierarchies=2, block_repeats=(2, 2)),
                       epochs=4, lr=3e-3)
    kw = dict(model_kw=dict(pos_emb='lape'), seeds=(0, 1), progress=False)
    try:
        alone = {m: CV.run_cv(toy_dataset, pre, tmp_path / 'seq', method=m, fold_batch=1, **kw) for m in ['HTNet', *fam]}
        together = CV.run_cv(toy_dataset, pre, tmp_path / 'par', method='HTNet', siblings=list(fam), fold_batch=5, **kw)
        pd.testing.assert_frame_equal(alone['HTNet'], together, check_exact=True)
        assert _same_records(tmp_path / 'seq', tmp_path / 'par') == [2] * 8 + [5] * 40     # 12 folds x 4 methods
        trained = []
        monkeypatch.setattr(CV, '_fit_group', lambda g: trained.append(g) or [[] for _ in g])
        for m in fam: pd.testing.assert_frame_equal(CV.run_cv(toy_dataset, pre, tmp_path / 'par', method=m, **kw), alone[m], check_exact=True)
        assert not trained                                                                   # every sibling's record was there
        monkeypatch.undo()
        gone = next((tmp_path / 'par').rglob('*.npz'))
        kept = {p: p.stat().st_mtime_ns for p in (tmp_path / 'par').rglob('*.npz') if p != gone}
        gone.unlink()
        CV.run_cv(toy_dataset, pre, tmp_path / 'par', method='HTNet', siblings=list(fam), fold_batch=1, **kw)
        assert gone.exists() and all(p.stat().st_mtime_ns == t for p, t in kept.items())
        import mer_nb.baselines  # noqa: F401  (registers STSTNet)
        with pytest.raises(MerError, match="sibling 'STSTNet' does not train the same model as 'HTNet'"):
            CV.run_cv(toy_dataset, pre, tmp_path / 'bad', method='HTNet', siblings=['STSTNet'], **kw)
    finally:
        for m in fam: del R.METHODS[m]
    with np.load(gone) as a, np.load(tmp_path / 'seq' / gone.relative_to(tmp_path / 'par')) as b:
        for k in b.files:
            if k != 'seconds': np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(alone['ESAAT-sb'].p0, alone['ESAAT-sb-n'].p0)                 # the steps do differ
