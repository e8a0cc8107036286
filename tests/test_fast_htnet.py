"""The fast HTNet path computes the same function as a plain implementation of the published HTNet kept here."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mer_nb.htnet import HTNet, PAPER_CONFIG, count_flops


def plain_htnet(sd: dict, cfg: dict, img):
    """HTNet's forward written out from the published code's structure (NCHW, einsum attention), reading the
    parameters by their state-dict names. Softmax attention only."""
    def ln(x, pre):      # LayerNorm over channels of (B, C, H, W), HTNet's ChannelNorm
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) / (var + 1e-5).sqrt() * sd[pre + '.g'] + sd[pre + '.b']

    def conv1(x, pre, bias=True): return F.conv2d(x, sd[pre + '.weight'], sd[pre + '.bias'] if bias else None)

    p, L = cfg['patch_size'], cfg['num_hierarchies']
    b, c, H, W = img.shape
    x = img.reshape(b, c, H // p, p, W // p, p).permute(0, 3, 5, 1, 2, 4).reshape(b, p * p * c, H // p, W // p)
    x = conv1(x, 'to_patch_embedding')
    if 'lape' in sd: x = x + sd['lape']
    heads = cfg['heads']
    for i, level in enumerate(reversed(range(L))):
        n, h = 2 ** level, heads * 2 ** i
        B, C, HH, WW = x.shape
        x = x.reshape(B, C, n, HH // n, n, WW // n).permute(0, 2, 4, 1, 3, 5).reshape(B * n * n, C, HH // n, WW // n)
        if f'layers.{i}.0.pos_emb' in sd:
            hh, ww = x.shape[-2:]
            x = x + sd[f'layers.{i}.0.pos_emb'][:hh * ww].reshape(1, 1, hh, ww)
        j = 0
        while f'layers.{i}.0.layers.{j}.1.norm.g' in sd:
            pre = f'layers.{i}.0.layers.{j}'
            if f'{pre}.0.norm.g' in sd:
                y = ln(x, f'{pre}.0.norm')
                bb, _, hh, ww = y.shape
                dh = C // h
                q, k, v = (t.reshape(bb, h, dh, hh * ww).transpose(-1, -2) for t in conv1(y, f'{pre}.0.fn.to_qkv', bias=False).chunk(3, 1))
                a = (torch.einsum('bhid,bhjd->bhij', q, k) * dh ** -0.5).softmax(-1)
                o = torch.einsum('bhij,bhjd->bhid', a, v).transpose(-1, -2).reshape(bb, h * dh, hh, ww)
                x = conv1(o, f'{pre}.0.fn.to_out.0') + x
            y = ln(x, f'{pre}.1.norm')
            x = conv1(F.gelu(conv1(y, f'{pre}.1.fn.net.0')), f'{pre}.1.fn.net.3') + x
            j += 1
        bnn, C, hh, ww = x.shape
        x = x.reshape(bnn // (n * n), n, n, C, hh, ww).permute(0, 3, 1, 4, 2, 5).reshape(bnn // (n * n), C, n * hh, n * ww)
        if level:
            x = F.conv2d(x, sd[f'layers.{i}.1.0.weight'], sd[f'layers.{i}.1.0.bias'], padding=1)
            x = F.max_pool2d(ln(x, f'layers.{i}.1.1'), 3, stride=2, padding=1)
    x = ln(x, 'mlp_head.0').mean(dim=(2, 3))
    return F.linear(x, sd['mlp_head.2.weight'], sd['mlp_head.2.bias'])


SMALL = dict(image_size=28, patch_size=7, dim=16, heads=3, block_repeats=(1, 1, 2))
ATT = dict(image_size=28, patch_size=2, dim=8, heads=2, num_hierarchies=2, block_repeats=(1, 2))
CASES = {'one token per block': SMALL, 'LAPE': {**SMALL, 'pos_emb': 'lape'}, 'no position term': {**SMALL, 'pos_emb': 'none'},
         '49 tokens per block': ATT, '49 tokens, LAPE, (0, 1) removed': {**ATT, 'pos_emb': 'lape', 'removed': [(0, 1)]},
         'paper configuration': PAPER_CONFIG}


@pytest.mark.parametrize('name', list(CASES))
def test_fast_path_equals_plain_implementation(name):
    torch.manual_seed(0)
    m = HTNet(**CASES[name])
    x = torch.rand(3, 3, 28, 28)
    sd = dict(m.named_parameters())
    plain = plain_htnet(sd, {**m.config}, x)
    m.fast = True; fast = m(x)
    m.fast = False; ref = m(x)
    scale = plain.abs().max().item()
    assert (fast - plain).abs().max().item() <= 2e-5 * scale, name
    assert (ref - plain).abs().max().item() <= 2e-5 * scale, name
    # gradients of every parameter: fast path against the plain implementation
    g_plain = torch.autograd.grad(plain.logsumexp(1).sum(), list(sd.values()), allow_unused=True)
    m.fast = True
    g_fast = torch.autograd.grad(m(x).logsumexp(1).sum(), list(sd.values()), allow_unused=True)
    top = max(g.abs().max().item() for g in g_plain if g is not None)
    for (k, _), a, b in zip(sd.items(), g_fast, g_plain):
        a = torch.zeros_like(_) if a is None else a
        b = torch.zeros_like(_) if b is None else b
        assert (a - b).abs().max().item() <= 1e-4 * top, (name, k)


def test_training_fast_and_plain_reach_the_same_weights():
    """Ten SGD steps from the same weights, one level (49 tokens, no max-pool). With max-pool, a window whose two largest
    entries differ by rounding sends the gradient to either one, so trajectories of any two implementations part
    after a few steps (measured: 1e-7 for 3 steps, then 1e-4); that is why this compares a configuration without one."""
    torch.manual_seed(0)
    m = HTNet(image_size=28, patch_size=4, dim=8, heads=2, num_hierarchies=1, block_repeats=(2,), pos_emb='lape')
    twin, start = copy.deepcopy(m), copy.deepcopy(m)
    x, y = torch.rand(16, 3, 28, 28), torch.randint(0, 3, (16,))
    opt_f, opt_p = torch.optim.SGD(m.parameters(), lr=1e-2), torch.optim.SGD(twin.parameters(), lr=1e-2)
    for _ in range(10):
        opt_f.zero_grad(); F.cross_entropy(m(x), y).backward(); opt_f.step()
        opt_p.zero_grad(); F.cross_entropy(plain_htnet(dict(twin.named_parameters()), twin.config, x), y).backward(); opt_p.step()
    moved = max((a - b).abs().max().item() for a, b in zip(m.parameters(), start.parameters()))
    assert moved > 1e-3                                       # training did change the weights
    for (k, a), b in zip(m.named_parameters(), twin.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-6, err_msg=k)


def test_flop_count_is_the_published_one_and_the_fast_path_does_less():
    with torch.device('cpu'):
        m = HTNet(**PAPER_CONFIG)
    assert count_flops(m) == 428_615_504 and m.fast          # the counter switches to the reference and back
    assert count_flops(m, fast=True) < 428_615_504
