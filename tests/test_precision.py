"""The precision setting (`Preset.precision`: fp32 or bf16 autocast): through the CLI into run.json and the run key,
its numbers against fp32 on the paper model, determinism, and fold-parallel against one fold at a time."""
import json

import numpy as np
import pytest
import torch

from mer_nb.cli import main
from mer_nb.store import run_key
from mer_nb.foldpar import train_folds
from mer_nb.recipe import autocast, build_model, get_preset
from mer_nb.synthetic import make_synthetic
from mer_nb.train import train_fold


def toy(n_folds=3):
    rng, data = np.random.default_rng(0), []
    for f, n in enumerate([20, 17, 12][:n_folds]):
        y = rng.integers(0, 3, n)
        x = np.clip(0.5 + 0.15 * (y[:, None, None, None] - 1) + 0.05 * rng.standard_normal((n, 3, 28, 28)), 0, 1).astype(np.float32)
        data.append((x, y, {'test': x[:5]}))
    return data


PRE = dict(epochs=2, batch_size=8, lr=3e-3, weight_decay=1e-4, class_weight='balanced')


def test_precision_through_cli_run_json_and_run_key(tmp_path):
    out = tmp_path / 'out'
    assert main(['reproduce', '--preset', 'smoke', '--only', 'table1', '--precision', 'bf16', '--param', 'methods=["HTNet"]',
                 '--out', str(out)]) == 0
    run = json.loads((out / 'table1' / 'run.json').read_text())
    assert run['preset']['precision'] == 'bf16'
    ds = make_synthetic(**get_preset('smoke').synthetic)
    k16, k32 = (run_key(ds, get_preset('smoke', precision=p), 'loso', 5, 'full') for p in ('bf16', 'fp32'))
    assert k16 != k32                                           # bf16 and fp32 records never mix
    assert (out / 'runs' / k16).is_dir() and not (out / 'runs' / k32).exists()
    with pytest.raises(SystemExit) as e: main(['reproduce', '--precision', 'fp16', '--out', str(tmp_path / 'x')])
    assert e.value.code == 2 and not (tmp_path / 'x').exists()          # refused in one line, before anything is written


def test_bf16_forward_close_to_fp32_on_the_paper_model():
    "bfloat16 keeps 8 significant bits: the paper model's logits stay within 0.03 of fp32, on the fast and the reference path."
    torch.manual_seed(0)
    m, x = build_model(get_preset('paper')).eval(), torch.rand(4, 3, 28, 28)
    bf = get_preset('paper', precision='bf16')
    with torch.no_grad():
        for fast in (True, False):
            m.fast = fast
            ref = m(x)
            with autocast(bf, 'cpu'): low = m(x)
            assert low.dtype == torch.bfloat16 and ref.dtype == torch.float32
            d = (low.float() - ref).abs().max().item()
            assert 0 < d < 0.03, (fast, d)                       # > 0: autocast did act


def test_bf16_training_deterministic_and_fold_parallel_equal():
    """Same seed, same bf16 run: equal records. Fold-parallel bf16 training (one bf16 `bmm` for all folds) gives
    each fold exactly the logits and losses it gets alone (measured equal on this CPU; the test says so if not),
    and differs from fp32 (the setting acts)."""
    data, pre = toy(), get_preset('smoke', precision='bf16', **PRE)
    one = [train_fold(x, y, ev, pre, seed=0)[:2] for x, y, ev in data]
    again = [train_fold(x, y, ev, pre, seed=0)[:2] for x, y, ev in data]
    for (la, sa), (lb, sb) in zip(one, again):
        assert np.array_equal(la['test'], lb['test']) and np.array_equal(sa, sb)
    par = train_folds(data, pre, seed=0)
    for (lp, sp), (ls, ss) in zip(par, one):
        assert np.array_equal(lp['test'], ls['test']), np.abs(lp['test'] - ls['test']).max()
        assert np.array_equal(sp, ss)
    fp = train_folds(data, get_preset('smoke', **PRE), seed=0)
    assert not np.array_equal(fp[0][0]['test'], par[0][0]['test'])


@pytest.mark.parametrize('prec', ['bf16'])
def test_train_command_records_precision(tmp_path, prec):
    from mer_nb.predict import load_model
    w = tmp_path / 'w.pt'
    assert main(['train', '--preset', 'smoke', '--precision', prec, '--save', str(w)]) == 0
    assert load_model(w)[1]["precision"] == prec
