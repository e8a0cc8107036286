"""A package that stands alone (issue 14, item 4): a wheel built from the checkout, installed into a fresh virtual
environment, runs `mer-nb reproduce --preset smoke --only fig1` from a folder outside the checkout; an editable install
finds the same package data.

Fast path: the new environment gets no dependencies of its own. A `.pth` file in its site-packages adds the site-packages
of the interpreter running this test (found at run time through `sysconfig`), so torch & co are reused; the wheel
itself is installed with `pip install --no-deps`. `.pth` files inside that reused folder are not processed, so the
editable install of the checkout that may live there is invisible; every import of mer_nb is checked to come from the
new environment, and PYTHONPATH is cleared."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns('.git', '.venv', '__pycache__', '*.egg-info', 'build', 'dist', 'reports', 'runs', '*.whl',
                              '.pytest_cache', '.ipynb_checkpoints', '_proc', '_docs')


def _sh(*cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f'{cmd}: {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r


def _clean_env(tmp: Path) -> dict:
    "No PYTHONPATH (it would put a checkout first), caches and Jupyter's user folders under tmp (no user kernelspec can interfere)."
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME', 'MER_NB_DEBUG', 'JUPYTER_PATH', 'VIRTUAL_ENV')}
    env.update(MER_NB_CACHE=str(tmp / 'cache'), JUPYTER_DATA_DIR=str(tmp / 'jupyter'), JUPYTER_CONFIG_DIR=str(tmp / 'jupyter-config'),
               OMP_NUM_THREADS='1')
    return env


def _venv(path: Path) -> Path:
    "A fresh virtual environment without pip, reusing this interpreter's site-packages through a .pth file; its python."
    _sh(sys.executable, '-m', 'venv', '--without-pip', path)
    py = path / 'bin' / 'python'
    site = Path(_sh(py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])').stdout.strip())
    here = {sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']}     # the interpreter running this test
    (site / 'reuse_outer_site_packages.pth').write_text(''.join(f'{p}\n' for p in sorted(here)))
    return py


def _source_copy(tmp: Path) -> Path:
    "The checkout's files (links kept: mer_nb/notebooks), so that building writes nothing into the checkout itself."
    src = tmp / 'src'
    shutil.copytree(ROOT, src, symlinks=True, ignore=SKIP)
    return src


def _where(py: Path, env: dict, cwd: Path) -> tuple[Path, Path]:
    "(mer_nb's folder, the experiment notebooks' folder) as the environment of `py` sees them."
    r = _sh(py, '-c', 'import mer_nb, mer_nb.cli as c; print(mer_nb.__file__); print(c.experiments_dir())', env=env, cwd=cwd)
    pkg, nbs = r.stdout.split()
    return Path(pkg).parent, Path(nbs)


def test_wheel_runs_fig1_outside_the_checkout(tmp_path):
    src = _source_copy(tmp_path)
    dist = tmp_path / 'dist'
    _sh(sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', dist, src, cwd=tmp_path)
    wheel, = dist.glob('mer_nb-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    from mer_nb.cli import ARTEFACTS
    assert {f'mer_nb/notebooks/{a.notebook}.ipynb' for a in ARTEFACTS.values()} | {'mer_nb/notebooks/artefact.ipynb'} | {'mer_nb/kernels/fold_adam.c', 'mer_nb/__main__.py'} <= names

    py = _venv(tmp_path / 'venv')
    env = _clean_env(tmp_path)
    _sh(sys.executable, '-m', 'pip', '--python', py, 'install', '--no-deps', '--no-index', '-q', wheel, env=env)
    work = tmp_path / 'elsewhere'
    work.mkdir()
    site = Path(_sh(py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])', env=env).stdout.strip())
    pkg, nbs = _where(py, env, work)
    assert pkg == site / 'mer_nb' and nbs == site / 'mer_nb' / 'notebooks', (pkg, nbs)       # the wheel, not the checkout
    assert ROOT not in pkg.parents and ROOT not in nbs.resolve().parents
    _sh(py, '-c', 'from mer_nb.foldpar import adam_source; assert b"mer_adam" in adam_source()', env=env, cwd=work)
    ks = _sh(py, '-c', 'from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec("python3").argv[0])',
             env=env, cwd=work).stdout.strip()
    assert ks in ('python', 'python3', str(py)) or Path(ks).parent == py.parent, ks          # the kernel runs this environment's python

    out = tmp_path / 'out'
    r = _sh(tmp_path / 'venv' / 'bin' / 'mer-nb', 'reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', out, env=env, cwd=work)
    for f in ('fig1.csv', 'fig1.md', 'fig1.png', 'fig1_complexity.ipynb', 'run.json'):
        assert (out / 'fig1' / f).is_file(), f
    run = json.loads((out / 'fig1' / 'run.json').read_text())
    assert Path(run['notebook']) == site / 'mer_nb' / 'notebooks' / 'fig1_complexity.ipynb'
    assert 'Kernel is running over TCP without encryption' not in r.stderr, r.stderr              # warning silenced at its source
    assert not list(work.iterdir())                                                                 # nothing written in the cwd
    _sh(py, '-m', 'mer_nb', '--version', env=env, cwd=work)


def test_editable_install_finds_the_same_package_data(tmp_path):
    src = _source_copy(tmp_path)
    py = _venv(tmp_path / 'venv')
    env = _clean_env(tmp_path)
    _sh(sys.executable, '-m', 'pip', '--python', py, 'install', '--no-deps', '--no-build-isolation', '--no-index', '-q', '-e', src,
        env=env, cwd=tmp_path)
    work = tmp_path / 'elsewhere'
    work.mkdir()
    pkg, nbs = _where(py, env, work)
    assert pkg == src / 'mer_nb' and nbs.resolve() == src / 'nbs' / 'experiments', (pkg, nbs)
    _sh(py, '-c', 'from mer_nb.foldpar import adam_source; assert b"mer_adam" in adam_source()', env=env, cwd=work)
