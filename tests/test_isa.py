"""The instruction set is part of a run: training pinned to AVX2 by default through every entry point, recorded, keyed,
and a replay of committed predictions (tests/data/replay, made by `python tests/test_isa.py --make-fixture` on an AMD
EPYC) that must come out bit for bit on a CPU of the fixture's vendor. On an Intel CPU the pinned replay of this short
fixture differs in the last bits of the probabilities (measured on an Intel Xeon with AVX-512: at most 6e-8, every class
the same; a full 60-epoch training drifts much further, see bench/README.md): oneMKL chooses its matrix kernels by CPU
vendor, which no instruction-set pin fixes; there the tests check that training ran
pinned (its label) and hold the probabilities to a bound of 1e-6. (Unpinned AVX-512 training there differs by 9e-8: on
that CPU the bound cannot tell pinned from native; the label does.)"""
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from mer_nb.core import ISA_PINS, can_pin, cpu_flags

FIXTURE = Path(__file__).resolve().parent / 'data' / 'replay'
ROOT = Path(__file__).resolve().parents[1]
FIXTURE_PRESET = ('quick', {'epochs': 8})     # the quick model (HTNet, width 32, depth (1, 1, 2)), 8 epochs, 2 LOSO folds
AVX512 = any(f.startswith('avx512') for f in cpu_flags())
FIXTURE_VENDOR = 'AuthenticAMD'          # the CPU vendor the fixture was trained on
NEAR = 1e-6                              # the largest probability difference allowed on a CPU of another vendor


def cpu_vendor() -> str:
    try: return next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('vendor_id')), '')
    except OSError: return ''

SAME_VENDOR = cpu_vendor() == FIXTURE_VENDOR


def _largest_difference(out: str) -> float:
    import re
    return max(float(x) for x in re.findall(r'largest probability difference ([0-9.e+-]+)', out))


def _unpinned_env(**extra):
    "This environment without the pins: a process started from it computes natively unless mer_nb pins it."
    env = {k: v for k, v in os.environ.items() if k not in ISA_PINS and k != 'MER_NB_ISA'}
    return {**env, **extra}


def _mer_nb(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'mer_nb', *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


@pytest.mark.skipif(not can_pin(), reason='the AVX2 pins apply to x86-64 CPUs with AVX2')
def test_cli_replay_of_committed_predictions_is_bit_for_bit(tmp_path):
    """`mer-nb replay` started without the pins restarts itself pinned and retrains the committed arm to the same
    float32 probabilities; on an AVX-512 machine unpinned training gives other bits, so this fails if pinning breaks."""
    r = _mer_nb('replay', str(FIXTURE), '--out', str(tmp_path / 'runs'), env=_unpinned_env())
    assert 'trained as avx2' in r.stdout, r.stdout + r.stderr
    if SAME_VENDOR:
        assert r.returncode == 0, r.stdout + r.stderr
        assert 'bit for bit the committed predictions' in r.stdout and 'largest probability difference 0;' in r.stdout, r.stdout
    else:     # another vendor's oneMKL kernels: the last bits differ, nothing more
        assert r.returncode == 1 and '36 of 36 samples get the committed class' in r.stdout, r.stdout + r.stderr
        assert _largest_difference(r.stdout) <= NEAR, r.stdout


@pytest.mark.skipif(not can_pin(), reason='the AVX2 pins apply to x86-64 CPUs with AVX2')
def test_python_api_in_an_unpinned_process_trains_pinned(tmp_path):
    """The Python API (and so a papermill kernel) in a process started without the pins: `run_cv` trains and reads the
    folds in pinned worker processes, and the predictions are bit for bit the committed ones."""
    code = (f'from mer_nb.cli import replay; from mer_nb.core import isa_label; '
            f'r = replay({str(FIXTURE)!r}, out={str(tmp_path / "runs")!r}, progress=False); '
            f'print(isa_label(), r["isa"], r["bit_for_bit"], r["selections"]["last"]["max_prob_diff"])')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=_unpinned_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    here, trained, same, dp = r.stdout.split()
    assert here.startswith('native-avx512') if AVX512 else here == 'avx2', here     # this process: not pinned
    assert trained == 'avx2', r.stdout
    assert (same, dp) == ('True', '0.0') if SAME_VENDOR else float(dp) <= NEAR, r.stdout


@pytest.mark.skipif(not AVX512, reason='only a CPU with AVX-512 computes differently when not pinned')
def test_native_is_its_own_run_key_and_recorded(toy_dataset, tmp_path):
    """On an AVX-512 CPU, `native` training is keyed apart from the pinned records (they never mix in one run folder),
    and the label names what it used."""
    import pickle
    (tmp_path / 'ds.pkl').write_bytes(pickle.dumps(toy_dataset))
    code = ('import pickle, sys; from mer_nb.store import run_key; from mer_nb.recipe import get_preset; '
            f'ds = pickle.load(open({str(tmp_path / "ds.pkl")!r}, "rb")); '
            'from mer_nb.core import training_isa; print(training_isa("cpu"), run_key(ds, get_preset("smoke"), "loso", 5, "full", device="cpu"))')
    out = {isa: subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=_unpinned_env(MER_NB_ISA=isa), timeout=300)
           for isa in ('avx2', 'native')}
    (a_isa, a_key), (n_isa, n_key) = (out[i].stdout.split() for i in ('avx2', 'native'))
    assert a_isa == 'avx2' and n_isa.startswith('native-avx512') and a_key != n_key, (out['avx2'].stdout, out['native'].stdout)


def test_bad_isa_setting_is_one_line():
    r = _mer_nb('reproduce', '--only', 'fig1', '--preset', 'smoke', env={**os.environ, 'MER_NB_ISA': 'avx512'})
    assert r.returncode == 2 and r.stderr.strip() == ("mer-nb: error: MER_NB_ISA 'avx512': choose avx2 (the same bits on every "
                                                      "x86-64 CPU, the default) or native (this CPU's fastest kernels)"), r.stderr
    r = _mer_nb('replay', str(FIXTURE), '--isa', 'avx512')
    assert r.returncode == 2 and "invalid choice: 'avx512'" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_replay_names_what_it_cannot_replay(tmp_path):
    r = _mer_nb('replay', str(FIXTURE), '--method', 'STSTNet', '--out', str(tmp_path))
    assert r.returncode == 2 and "no rows of method 'STSTNet' at seed 0 (methods: HTNet; seeds: 0)" in r.stderr, r.stderr
    r = _mer_nb('replay', str(tmp_path), '--out', str(tmp_path / 'o'))
    assert r.returncode == 2 and 'not an artefact folder (no run.json)' in r.stderr, r.stderr


def make_fixture():
    "Write tests/data/replay: HTNet at seed 0 on the first 2 LOSO folds of the embedded synthetic set, trained pinned."
    import tempfile
    from mer_nb.core import isa_label, write_json
    from mer_nb.cv import make_folds, run_cv
    from mer_nb.store import training_code
    from mer_nb.recipe import get_preset
    from mer_nb.sources import open_dataset
    assert isa_label() == 'avx2', 'start the process pinned (make test does; or set core.ISA_PINS in the environment)'
    p = get_preset(FIXTURE_PRESET[0], **FIXTURE_PRESET[1])
    ds = open_dataset(None, p.synthetic, progress=False)
    names = [n for n, _, _ in make_folds(ds.subjects, 'loso')][:2]
    with tempfile.TemporaryDirectory() as d:
        preds = run_cv(ds, p, d, seeds=(0,), only_folds=names, device='cpu', progress=False)
    FIXTURE.mkdir(parents=True, exist_ok=True)
    write_json(FIXTURE / 'run.json', {'artefact': 'replay', 'parameters': {'preset': p.name, 'overrides': FIXTURE_PRESET[1]},
                                      'preset': asdict(p), 'seeds': [0], 'training_code': training_code(), 'training_isa': 'avx2',
                                      'command': 'python tests/test_isa.py --make-fixture'})
    preds.to_csv(FIXTURE / 'replay_predictions.csv.gz', index=False)
    print(f'wrote {FIXTURE}: {len(preds)} rows, folds {", ".join(names)}')


if __name__ == '__main__' and sys.argv[1:] == ['--make-fixture']: make_fixture()
