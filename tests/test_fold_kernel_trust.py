"""Nothing foreign is executed (issue 18, item 2): the compiled Adam kernel of mer_nb.foldpar is built and loaded only
from a folder this user owns and nobody else can write, and a cached library only if its SHA-256 is the one recorded
when it was built. Each test plants a shared library whose constructor writes a marker file when it is loaded: the
marker must never appear, and fold-parallel training must still give train_fold's numbers (through a rebuilt kernel
or torch's Adam)."""
import json
import os
import platform
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import torch

import mer_nb.foldpar as FP
import mer_nb.recipe as R
import mer_nb.train as T

pytestmark = pytest.mark.skipif(
    shutil.which('cc') is None or platform.machine().lower() not in ('x86_64', 'amd64')
    or torch.backends.cpu.get_cpu_capability() not in ('AVX2', 'AVX512') or not torch.backends.mkl.is_available()
    or os.environ.get('MER_NB_FUSED_ADAM') == '0',
    reason='the compiled Adam kernel cannot be built here (needs cc, x86-64 with AVX2 and torch with MKL)')

PLANTED_C = r'''
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *p = getenv("MER_NB_PLANTED_MARK");
    FILE *f = p ? fopen(p, "w") : NULL;
    if (f) { fputs("foreign code ran\n", f); fclose(f); }
}
void mer_adam(void) {}
'''
PRESET = R.get_preset('smoke', epochs=2, lr=3e-3, weight_decay=1e-4)


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
    "(the kernel's file name, the bytes of a foreign library under that name, a genuine build record of it)."
    d = tmp_path_factory.mktemp('planted')
    so = d / 'planted.so'
    subprocess.run(['cc', '-shared', '-fPIC', '-x', 'c', '-', '-o', str(so)], input=PLANTED_C.encode(), check=True)
    genuine = tmp_path_factory.mktemp('genuine')
    os.environ['MER_NB_CACHE'] = str(genuine)
    try: name = FP._compile_adam().name
    finally: del os.environ['MER_NB_CACHE']
    record = json.loads((genuine / 'kernels' / name.replace('.so', '.json')).read_text())
    return name, so.read_bytes(), record


@pytest.fixture(scope='module')
def reference(toy_dataset_module):
    data = toy_dataset_module
    return [T.train_fold(xt, yt, ev, PRESET, seed=0, device='cpu')[:2] for xt, yt, ev in data]


@pytest.fixture(scope='module')
def toy_dataset_module():
    rng = np.random.default_rng(0)
    out = []
    for f, n in enumerate((12, 9)):
        y = np.tile([0, 1, 2], n // 3)
        x = np.clip(0.5 + 0.15 * (y[:, None, None, None] - 1) + 0.05 * rng.standard_normal((n, 3, 28, 28)), 0, 1).astype(np.float32)
        out.append((x, y, {'test': x[:4]}))
    return out


def _plant(d, name, lib, record, mode=0o700):
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(lib)
    (d / name).chmod(0o755)
    # the planter writes a record that vouches for its own library: only the folder's owner and mode can tell
    (d / name.replace('.so', '.json')).write_text(json.dumps({**record, 'sha256': FP._sha256(d / name)}))
    d.chmod(mode)


@pytest.fixture
def env(tmp_path, monkeypatch):
    "A fresh process state: cache and temporary folder under tmp_path, no kernel loaded yet, the marker's path."
    monkeypatch.setenv('MER_NB_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
    (tmp_path / 'tmp').mkdir()
    monkeypatch.setattr(FP, '_FUSED', {})
    mark = tmp_path / 'MARK'
    monkeypatch.setenv('MER_NB_PLANTED_MARK', str(mark))
    return tmp_path, mark


def _trains_as_train_fold(data, reference):
    for (logs, losses), (ref_logs, ref_losses) in zip(FP.train_folds(data, PRESET, seed=0), reference):
        np.testing.assert_array_equal(logs['test'], ref_logs['test'])
        np.testing.assert_array_equal(losses, ref_losses)


def _check(env, capsys, data, reference, said, loaded=True):
    tmp, mark = env
    fn = FP.fused_adam()
    err = capsys.readouterr().err
    assert not mark.exists(), 'a planted library was loaded: its constructor ran'
    assert (fn is not None) == loaded, FP._FUSED.get('why')
    lines = [l for l in err.splitlines() if l.startswith('mer_nb: compiled Adam:')]
    assert len(lines) == 1 and said in lines[0], err
    _trains_as_train_fold(data, reference)
    assert not mark.exists()


def test_world_writable_cache_is_not_used(env, planted, capsys, toy_dataset_module, reference):
    tmp, _ = env
    name, lib, record = planted
    _plant(tmp / 'cache' / 'kernels', name, lib, record, mode=0o777)
    _check(env, capsys, toy_dataset_module, reference, 'can be written by others')
    assert FP._compile_adam().parent == tmp / 'tmp' / f'mer_nb-{os.getuid()}'      # built in the private fallback
    assert (tmp / 'tmp' / f'mer_nb-{os.getuid()}').stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason='making a folder owned by another user needs root')
def test_foreign_owned_cache_is_not_used(env, planted, capsys, toy_dataset_module, reference):
    tmp, _ = env
    name, lib, record = planted
    _plant(tmp / 'cache' / 'kernels', name, lib, record, mode=0o755)
    for p in (tmp / 'cache' / 'kernels', *(tmp / 'cache' / 'kernels').iterdir()): os.chown(p, 65534, 65534)
    _check(env, capsys, toy_dataset_module, reference, 'is owned by uid 65534')


def test_linked_cache_folder_is_not_used(env, planted, capsys, toy_dataset_module, reference):
    tmp, _ = env
    name, lib, record = planted
    _plant(tmp / 'elsewhere', name, lib, record, mode=0o700)      # private, but reached through a link
    (tmp / 'cache').mkdir()
    (tmp / 'cache' / 'kernels').symlink_to(tmp / 'elsewhere')
    _check(env, capsys, toy_dataset_module, reference, 'symbolic link')


def test_library_not_matching_its_record_is_rebuilt(env, planted, capsys, toy_dataset_module, reference):
    tmp, _ = env
    name, lib, record = planted
    d = tmp / 'cache' / 'kernels'
    _plant(d, name, lib, record, mode=0o700)
    (d / name.replace('.so', '.json')).write_text(json.dumps(record))     # the genuine build's record, a foreign library
    _check(env, capsys, toy_dataset_module, reference, 'rebuilt it')
    assert FP._sha256(d / name) == record['sha256']            # replaced by this process's own build


def test_nowhere_private_falls_back_to_torch_adam(env, planted, capsys, toy_dataset_module, reference):
    tmp, _ = env
    name, lib, record = planted
    _plant(tmp / 'cache' / 'kernels', name, lib, record, mode=0o777)
    _plant(tmp / 'tmp' / f'mer_nb-{os.getuid()}', name, lib, record, mode=0o777)
    _check(env, capsys, toy_dataset_module, reference, "torch's Adam instead", loaded=False)
    assert 'can be written by others' in FP._FUSED['why']
