"""LAPE, agent attention and ESAAT: parameter arithmetic, closed forms, the estimator, and ESAAT through the one trainer."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mer_nb.esaat as E
import mer_nb.recipe as R
import mer_nb.cv as CV
import mer_nb.store as ST
from mer_nb.data import model_input
from mer_nb.agent import AgentAttention, agent_from_softmax
from mer_nb.htnet import HTNet, PAPER_CONFIG, count_flops, count_params

TINY = dict(image_size=28, patch_size=7, dim=8, heads=2, num_hierarchies=2, block_repeats=(2, 2))   # 4 tokens per block


def meta(**kw):
    with torch.device('meta'):
        return HTNet(**{**PAPER_CONFIG, **kw})


# --- LAPE -------------------------------------------------------------------------------------------------------

def test_paper_config_counts_unchanged_and_lape_delta():
    m = meta()
    assert count_params(m) == 139_582_982 and count_flops(m) == 428_615_504
    assert count_params(meta(pos_emb='lape')) - count_params(m) == 256 * 4 * 4 - 3
    assert count_flops(meta(pos_emb='lape')) == count_flops(m)


def test_lape_is_one_vector_per_patch_added_after_embedding():
    torch.manual_seed(0)
    m = HTNet(**{**TINY, 'dim': 8}, pos_emb='lape').eval()
    x = torch.rand(2, 3, 28, 28)
    seen = {}
    m.layers[0][0].register_forward_pre_hook(lambda mod, inp: seen.setdefault('x', inp[0]))
    from mer_nb.htnet import from_blocks, reference_path
    with reference_path(m): m(x)
    assert torch.allclose(from_blocks(seen['x'], 2), m.embed(x) + m.lape, atol=1e-6)
    assert m.lape.shape == (1, 8, 4, 4) and len(torch.unique(m.lape[0].reshape(8, 16).T, dim=0)) == 16


# --- agent attention ----------------------------------------------------------------------------------------------

def test_agent_one_token_closed_form():
    torch.manual_seed(0)
    m = AgentAttention(12, 3, (1, 1), 4)
    torch.nn.init.normal_(m.dwc.weight); torch.nn.init.normal_(m.dwc.bias)
    x = torch.randn(7, 12, 1, 1)
    v = m.to_qkv(x)[:, 24:]
    closed = F.conv2d((1 + m.dwc.weight[:, 0, 1, 1])[None, :, None, None] * v + m.dwc.bias[None, :, None, None],
                      m.to_out[0].weight, m.to_out[0].bias)
    assert torch.allclose(m(x), closed, atol=1e-6)


@pytest.mark.parametrize('hw,agents,expect', [((1, 1), 4, 1), ((2, 2), 9, 4), ((2, 2), 16, 4), ((3, 3), 4, 4), ((7, 7), 9, 9)])
def test_agent_fewer_tokens_than_agents(hw, agents, expect):
    torch.manual_seed(1)
    m = AgentAttention(8, 2, hw, agents)
    assert m.agent_num == expect and m.agent_bias.shape == (2, expect, hw[0] * hw[1])
    x = torch.randn(3, 8, *hw, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_agent_in_htnet_keeps_attention_width_and_one_token_equals_softmax_at_init():
    torch.manual_seed(0)
    soft = HTNet(**PAPER_CONFIG | dict(dim=16, heads=3, block_repeats=(1, 1, 1))).eval()
    ag = E.to_agent(soft)
    for key, mod in ag.attention_layers().items():
        inner = soft.attention_layers()[key].fn.to_out[0].in_channels          # HTNet's heads * (dim // heads)
        assert mod.fn.dwc.in_channels == mod.fn.to_out[0].in_channels == inner == mod.fn.heads * (mod.fn.to_qkv.in_channels // mod.fn.heads)
    x = torch.rand(3, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(ag(x), soft(x), atol=1e-5)   # one token per block, biases and DWC zero: the same function


# --- the estimator ------------------------------------------------------------------------------------------------

def test_cmi_closed_form_and_wrong_estimator_fails():
    rows = E.check_closed_form(E.gaussian_cmi)
    assert max(abs(r['error']) for r in rows if r['n'] == 20_000) < 0.02
    with pytest.raises(AssertionError, match='closed-form test failed'):
        E.check_closed_form(lambda Z, A, H: E.gaussian_cmi(Z, A, None))


def test_cmi_independent_affine_and_null():
    rng = np.random.default_rng(5)
    vals = [E.gaussian_cmi(rng.normal(size=(1500, 3)), rng.normal(size=(1500, 12)), rng.normal(size=(1500, 12))) for _ in range(20)]
    assert abs(np.mean(vals) / (3 * 8 / 3000) - 1) < 0.25
    Z, A, H, _ = E.gaussian_example(2000, 3, 3, 3, seed=9)
    M = rng.normal(size=(3, 3)) + 3 * np.eye(3)
    assert abs(E.gaussian_cmi(Z @ M + 4, A @ M.T - 1, H @ M) - E.gaussian_cmi(Z, A, H)) < 1e-6
    assert 0 < E.null_level(500) < 0.1


# --- ESAAT arithmetic at the paper configuration -------------------------------------------------------------------

def test_paper_config_esaat_removes_at_least_18_percent():
    cfg = {**PAPER_CONFIG, 'pos_emb': 'lape'}
    removed = E.paper_rule_removal(cfg)
    n_lape, n_esaat = count_params(meta(pos_emb='lape')), E.final_params(cfg, removed)
    assert len(removed) == 7 and all(l == 0 for l, _ in removed)
    assert 1 - n_esaat / n_lape >= 0.18, 1 - n_esaat / n_lape
    assert (n_lape, n_esaat) == (139_587_075, 110_366_139)
    assert 1 - E.final_params(cfg, removed[:6]) / n_lape < 0.18          # six last-level sub-layers are not enough
    m = meta(pos_emb='lape', removed=removed, attention='agent')
    assert count_params(m) == n_esaat and len(m.attention_layers()) == 14 - 7


# --- greedy removal recomputes the scores ---------------------------------------------------------------------------

def test_greedy_removal_recomputes_scores(monkeypatch):
    torch.manual_seed(0)
    m = HTNet(**TINY, pos_emb='lape').eval()
    x = np.random.default_rng(0).random((60, 3, 28, 28)).astype(np.float32)
    calls, real = [], E.layer_scores
    def spy(model, xx, k=8):
        calls.append(sorted(model.attention_layers()))
        return real(model, xx, k)
    monkeypatch.setattr(E, 'layer_scores', spy)
    pruned, removed, steps = E.greedy_removal(m, x, target=0.05, k=4)
    assert len(calls) == len(removed) + 1 >= 2
    for i, key in enumerate(removed):           # every later call sees the model without the layers removed so far
        assert key in calls[i] and all(key not in c for c in calls[i + 1:])
    assert len({l for l, _ in pruned.attention_layers()}) == 2            # one per level kept


# --- the trainer's post_train hook and ESAAT through run_cv ---------------------------------------------------------

def test_post_train_hook_sees_training_samples_only(toy_dataset, tmp_path):
    seen = []

    class Hook:
        def __repr__(self): return 'Hook()'
        def __call__(self, model, x_train, y_train, evals, preset, seed, device, progress, logs, losses, fold=None):
            seen.append(x_train.copy())
            return {k: v[-1:] * 0 + 7 for k, v in logs.items()}, losses[-1:], {'n_train': len(x_train)}

    R.register_method('hooked', R.Method(HTNet, model_input, 'torch', True, post_train=Hook()))
    try:
        preset = R.get_preset('smoke', epochs=2)
        preds = CV.run_cv(toy_dataset, preset, tmp_path, protocol='kfold', k=2, selections=('last',), method='hooked', progress=False)
        assert ST.run_key(toy_dataset, preset, 'kfold', 2, 'full', None, 'hooked') != ST.run_key(toy_dataset, preset, 'kfold', 2, 'full', None, 'HTNet')
    finally:
        del R.METHODS['hooked']
    x = model_input(toy_dataset)
    folds = CV.make_folds(toy_dataset.subjects, 'kfold', 2)
    assert len(seen) == len(folds)                                        # the hook ran once per fold
    for (_, tr, te), xs in zip(folds, seen):
        assert np.array_equal(xs, x[tr])                                  # exactly the fold's training samples
    recs = sorted(tmp_path.rglob('*.npz'))
    with np.load(recs[0]) as r:
        assert int(r['post_n_train']) in {len(tr) for _, tr, _ in folds} and r['test_logits'].shape[0] == 1
    assert (preds.epoch == 1).all() and (preds.p0.round(6) == round(1 / 3, 6)).all()   # the hook's logits are what is reported


def test_esaat_through_run_cv(toy_dataset, tmp_path):
    R.register_method('ESAAT-t', R.Method(HTNet, model_input, 'torch', True, post_train=E.ESAAT(target=0.05, k=4, finetune=0.5)))
    try:
        preset = R.get_preset('smoke', model=TINY, epochs=4, lr=3e-3)
        kw = dict(pos_emb='lape')
        p = CV.run_cv(toy_dataset, preset, tmp_path, protocol='kfold', k=2, selections=('last',), model_kw=kw, method='ESAAT-t', progress=False)
        base = CV.run_cv(toy_dataset, preset, tmp_path, protocol='kfold', k=2, selections=('last',), model_kw=kw, progress=False)
        recs = E.esaat_records(toy_dataset, preset, tmp_path, 'kfold', 2, (0,), kw, 'ESAAT-t')
    finally:
        del R.METHODS['ESAAT-t']
    assert len(p) == len(toy_dataset) and len(recs) == 2
    folds = CV.make_folds(toy_dataset.subjects, 'kfold', 2)
    for r, (_, tr, te) in zip(recs, folds):
        assert r['removed'] and r['params_after'] < r['params_before']
        assert np.array_equal(r['test_idx'], te)
        # before pruning, the ESAAT run's model is the HTNet+LAPE run's model (same training): same predictions
        b = base.set_index('id').loc[toy_dataset.ids[te], 'pred'].to_numpy()
        assert np.array_equal(np.asarray(r['base_test_logits']).argmax(-1), b)
    esaat_files = [f for f in sorted(tmp_path.rglob('*.npz')) if 'post_removed' in np.load(f).files]
    assert len(esaat_files) == 2
    with np.load(esaat_files[0]) as r:       # fine-tuned for 50% of 4 epochs, scored on the training samples
        assert r['test_logits'].shape[0] == 2 and int(r['post_score_samples']) in {len(tr) for _, tr, _ in folds}


def test_build_model_overrides_preset_keys():
    m = R.build_model(R.get_preset('smoke'), patch_size=2, num_hierarchies=2, block_repeats=(1, 1))
    assert m.seq_len == 49


def test_threshold_mode_removes_a_silent_layer_first():
    torch.manual_seed(0)
    m = HTNet(**TINY, pos_emb='lape').eval()
    with torch.no_grad():
        o = m.attention_layers()[(1, 1)].fn.to_out[0]; o.weight.zero_(); o.bias.zero_()     # this layer adds nothing
    x = np.random.default_rng(1).random((80, 3, 28, 28)).astype(np.float32)
    pruned, removed, steps = E.greedy_removal(m, x, mode='threshold', k=4)
    assert removed[0] == (1, 1) and steps[0][(1, 1)] == 0.0
    last = steps[-1]
    per_level = {l: sum(1 for k in last if k[0] == l) for l, _ in last}
    # it stopped because the lowest removable score reached the null level, or nothing more may go
    removable = [v for k, v in last.items() if per_level[k[0]] > 1]
    assert not removable or min(removable) >= E.null_level(len(x), 4)
