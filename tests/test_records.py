"""Work is not lost: fold records written all or nothing, corrupt ones named, moved aside and trained again, and the
worker processes of a run end with it."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mer_nb.core as C
import mer_nb.cv as CV
import mer_nb.store as ST
import mer_nb.recipe as R
from mer_nb.core import MerError, MerWarning

FAST = R.get_preset('smoke', epochs=3, lr=3e-3)


def run(ds, out):
    return CV.run_cv(ds, FAST, out, workers=1, progress=False, device='cpu', fold_batch=1)


def mer_warnings(fn):
    "(result of fn(), the MerWarning messages it issued)"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        out = fn()
    return out, [str(x.message) for x in w if issubclass(x.category, MerWarning)]


@pytest.fixture
def reference(toy_dataset, tmp_path):
    "A toy run in tmp_path/'runs': (dataset, predictions, record paths in fold order)."
    out = tmp_path / 'runs'
    preds = run(toy_dataset, out)
    folds = CV.make_folds(toy_dataset.subjects)
    recs = CV.record_paths(out, toy_dataset, FAST, folds=folds)
    return toy_dataset, preds, [recs[0, name] for name, _, _ in folds]


@pytest.mark.parametrize('damage', ['truncated', 'not a zip', 'empty', 'another fold', 'array missing'])
def test_a_corrupt_record_is_named_moved_aside_and_trained_again(reference, tmp_path, damage):
    ds, preds, recs = reference
    bad, other = recs[2], recs[3]
    if damage == 'truncated': bad.write_bytes(bad.read_bytes()[:200])
    elif damage == 'not a zip': bad.write_text('hello')
    elif damage == 'empty': bad.write_bytes(b'')
    elif damage == 'another fold': bad.write_bytes(other.read_bytes())            # a foreign record: its test samples differ
    else:
        with np.load(bad) as r: kept = {k: r[k] for k in r.files if k != 'test_logits'}
        np.savez(bad, **kept)
    t0 = bad.stat().st_mtime_ns
    again, msgs = mer_warnings(lambda: run(ds, tmp_path / 'runs'))
    assert len(msgs) == 1 and '\n' not in msgs[0], msgs
    assert msgs[0].startswith(f'{bad}: corrupt fold record') and 'moved to' in msgs[0] and bad.name + '.corrupt' in msgs[0]
    assert bad.with_name(bad.name + '.corrupt').exists()
    assert bad.exists() and bad.stat().st_mtime_ns != t0                         # trained again, in the same run
    pd.testing.assert_frame_equal(again, preds)
    _, msgs = mer_warnings(lambda: run(ds, tmp_path / 'runs'))                  # and the next run finds it whole
    assert msgs == []


def test_sound_records_are_read_back_without_training(reference, tmp_path, monkeypatch):
    ds, preds, _ = reference
    monkeypatch.setattr(CV, '_fit_group', lambda g: (_ for _ in ()).throw(AssertionError('trained a fold on disk')))
    pd.testing.assert_frame_equal(run(ds, tmp_path / 'runs'), preds)


def test_an_unreadable_record_at_collection_is_one_line_naming_it(reference, tmp_path):
    ds, _, recs = reference
    folds = CV.make_folds(ds.subjects)
    paths = {('full', 0, name): p for (name, _, _), p in zip(folds, recs)}
    recs[0].write_bytes(b'junk')
    with pytest.raises(MerError) as e:
        ST.collect_predictions(ds, paths, folds, ('last',), 'HTNet', 'loso')
    assert str(e.value).startswith(f'{recs[0]}: cannot read fold record') and '\n' not in str(e.value)


@pytest.mark.parametrize('where', ['write', 'fsync', 'replace'])
def test_an_interrupted_record_write_leaves_no_partial_record(toy_dataset, tmp_path, monkeypatch, where):
    "The third record's write fails midway (half its bytes written / before the rename): no .npz for it, no temp file."
    calls = {'n': 0}
    real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace

    def third():
        calls['n'] += 1
        return calls['n'] == 3

    class HalfFile:
        def __init__(self, f): self.f = f
        def __enter__(self): return self
        def __exit__(self, *a): self.f.close()
        def write(self, b):
            self.f.write(b[:len(b) // 2]); self.f.flush()
            raise OSError(28, 'No space left on device')
        def __getattr__(self, k): return getattr(self.f, k)

    if where == 'write':
        monkeypatch.setattr(C.os, 'fdopen', lambda fd, mode: HalfFile(real_fdopen(fd, mode)) if third() else real_fdopen(fd, mode))
    elif where == 'fsync':
        def fsync(fd):
            if third(): raise OSError(5, 'Input/output error')
            return real_fsync(fd)
        monkeypatch.setattr(C.os, 'fsync', fsync)
    else:
        def replace(a, b):
            if str(b).endswith('.npz') and third(): raise KeyboardInterrupt   # as if stopped right there
            return real_replace(a, b)
        monkeypatch.setattr(C.os, 'replace', replace)
    with pytest.raises((OSError, KeyboardInterrupt)):
        run(toy_dataset, tmp_path)
    recs = sorted(tmp_path.rglob('*.npz'))
    assert len(recs) == 2, recs                                                   # the two before it, whole
    for p in recs:
        with np.load(p) as r: assert {'test_idx', 'test_logits'} <= set(r.files) and r['test_logits'].size
    assert [p for p in tmp_path.rglob('*') if p.is_file() and p.suffix != '.npz'] == []   # no temp file left
    monkeypatch.undo()
    _, msgs = mer_warnings(lambda: run(toy_dataset, tmp_path))                    # the rest trains, nothing corrupt
    assert msgs == [] and len(list(tmp_path.rglob('*.npz'))) == 6


def test_records_are_written_only_under_the_run_cache(toy_dataset, tmp_path):
    out = tmp_path / 'runs'
    with pytest.raises(MerError, match='fold record .* lies outside'):
        CV.record_paths(out, toy_dataset, FAST, folds=[('../../../../escaped', None, None)])
    (out).mkdir()
    (out / 'link').symlink_to(tmp_path)
    with pytest.raises(MerError, match='refusing to write .* lies outside'):
        C.atomic_write(out / 'link' / 'x.npz', b'x', root=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['runs']


WORKERS = textwrap.dedent('''
    import os, sys, numpy as np, torch
    from pathlib import Path
    import mer_nb.recipe as R, mer_nb.cv as CV
    from mer_nb.data import MERDataset

    class Mark:
        "An augmentation that adds nothing but leaves a file named after the worker's pid: proof the worker is training."
        def __init__(self, d): self.d = d
        def __repr__(self): return 'Mark()'
        def __call__(self, x, y, subjects, fold, seed, regime):
            Path(self.d, str(os.getpid())).touch()
            return x[:0], y[:0]

    if __name__ == '__main__':
        rng = np.random.default_rng(0); n = 48; lab = np.tile([0, 1, 2], n // 3)
        flows = np.clip(0.5 + 0.1 * (lab[:, None, None, None] - 1) + 0.05 * rng.standard_normal((n, 3, 28, 28)), 0, 1)
        ds = MERDataset(ids=[f't{i}' for i in range(n)], datasets=['a'] * n, subjects=np.arange(n) // 8, labels=lab, flows=flows)
        CV.run_cv(ds, R.get_preset('smoke', epochs=5000), sys.argv[1], workers=2, progress=False, device='cpu', fold_batch=1,
                  augment=Mark(sys.argv[2]))
''')


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f: return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux only')
def test_workers_end_when_the_run_is_killed(tmp_path):
    "SIGKILL the process running run_cv(workers=2) while its workers train: they must not train on as orphans."
    (tmp_path / 'run.py').write_text(WORKERS)
    marks = tmp_path / 'marks'; marks.mkdir()
    p = subprocess.Popen([sys.executable, str(tmp_path / 'run.py'), str(tmp_path / 'runs'), str(marks)],
                         env={**os.environ, 'OMP_NUM_THREADS': '1'}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pids = []
    try:
        t0 = time.time()
        while len(pids) < 2:
            assert p.poll() is None, p.stderr.read()[-3000:]
            assert time.time() - t0 < 90, 'the workers did not start'
            time.sleep(0.2)
            pids = [int(m.name) for m in marks.iterdir()]
        assert all(_alive(w) for w in pids)
        p.send_signal(signal.SIGKILL); p.wait()
        t0 = time.time()
        while any(_alive(w) for w in pids) and time.time() - t0 < 10: time.sleep(0.2)
        assert not any(_alive(w) for w in pids), f'orphan workers still running: {[w for w in pids if _alive(w)]}'
    finally:
        if p.poll() is None: p.kill(); p.wait()
        for w in pids:                       # the workers this test started, should the assertion have failed
            if _alive(w):
                try: os.kill(w, signal.SIGKILL)
                except OSError: pass


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux only')
def test_the_worker_initializer_asks_for_sigterm_when_the_parent_dies():
    "In a child process: after `_init_worker`, prctl(PR_GET_PDEATHSIG) reads back SIGTERM."
    code = ('import ctypes, signal, os, mer_nb.cv as CV; CV._init_worker(os.getppid()); s = ctypes.c_int(0); '
            'ctypes.CDLL(None).prctl(2, ctypes.byref(s), 0, 0, 0); print(s.value == signal.SIGTERM)')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == 'True', r.stderr[-2000:]


def test_training_code_covers_every_module_a_record_draws_on():
    """The training-code hash (`store.training_code`) is taken over `store.training_modules()`, derived from the package's
    source: a method whose model, inputs or post-training step, or an augmentation whose hook, lives in a module outside
    it would silently reuse stale fold records when that module changes. With every module of the package imported (so
    every method is registered), each mer_nb module a registered method or the diffusion augmenter draws on must be in
    the derived set, and so must every module of the hand-kept list it replaced."""
    import importlib, pkgutil
    import mer_nb
    for mod in pkgutil.iter_modules(mer_nb.__path__):
        if mod.name != '__main__': importlib.import_module(f'mer_nb.{mod.name}')
    from mer_nb.diffusion import DiffusionAugment
    from mer_nb.recipe import METHODS
    hashed = set(ST.training_modules())
    used = {}
    for name, m in METHODS.items():
        parts = [m.factory, m.inputs] + ([type(m.post_train)] if m.post_train is not None else [])
        for obj in parts:
            mod = getattr(obj, '__module__', '') or ''
            if mod.startswith('mer_nb.'): used.setdefault(mod.split('.', 1)[1], set()).add(name)
    assert used, 'no registered method found'
    used.setdefault(DiffusionAugment.__module__.split('.', 1)[1], set()).add('augment=DiffusionAugment')
    missing = {mod: sorted(names) for mod, names in used.items() if mod not in hashed}
    assert not missing, f'modules defining registered methods or augmenters but not in store.training_modules(): {missing}'
    before = {'core', 'data', 'htnet', 'agent', 'recipe', 'train', 'foldpar', 'cv', 'baselines', 'esaat', 'diffusion'}
    assert before | {'store'} <= hashed, sorted(before | {'store'} - hashed)
    assert not {'report', 'experiments', 'cli', 'predict'} & hashed     # what only reads or presents records does not retrain them
