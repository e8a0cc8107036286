"""How close each model of a reproduction trains to what one core can compute: the headroom left for a faster kernel.

    OMP_NUM_THREADS=1 python bench/headroom.py                 # quick preset, batch 32, one thread
    OMP_NUM_THREADS=1 python bench/headroom.py --steps 10       # more timed steps

For every model the quick-preset artefacts train (HTNet at the preset's configuration and at Tables 4-5's 49-token
one, the three trained baselines, the DDPM of Tables 2-3), one training step as the trainer takes it (forward,
cross-entropy or the DDPM's noise MSE, backward, Adam/AdamW update) at the preset's batch, on one thread, plain
models one at a time (not the fold-parallel path HTNet runs on). It prints the step time, the matrix FLOPs of forward
and backward counted by `torch.utils.flop_counter` (matrix products and convolutions; element-wise work is not
counted), the GFLOP/s they amount to, and that as a share of a 2048x2048 float32 matrix product on the same thread (the
practical limit). A model near the limit costs what its FLOPs cost: only fewer FLOPs (a smaller configuration, fewer
epochs or folds) make it cheaper; a model far below it spends its time on memory traffic and per-operation overhead,
which batching or fusion can remove.

Then the attention of the 49-token configuration, the one model far from the limit whose time is attention maps, at
the shape fold-parallel training gives it (`--folds` folds x batch x blocks, heads, 49 tokens, dim_head): forward and
backward as HTNet computes it (product, scale, softmax, product) against PyTorch's fused
`F.scaled_dot_product_attention`, their ratio, the largest difference of the outputs, and whether the fused kernel
gives a block the same bits alone as in the batch, output and gradients (what fold-parallel equality would need). Measured in one run,
interleaved; no timing is asserted anywhere.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from precision import matmul_gflops

from mer_nb.diffusion import DIFFUSION_PRESETS, DDPMConfig, make_scheduler, make_unet
from mer_nb.ablations import model_configs
from mer_nb.htnet import tokens_per_block
from mer_nb.recipe import build_model, get_preset


def classifier_step(model, batch: int, channels: int, lr: float):
    x, y = torch.rand(batch, channels, 28, 28), torch.randint(0, 3, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def ddpm_step(cfg: DDPMConfig):
    unet = make_unet(cfg, 28, 3)
    sched = make_scheduler(cfg.timesteps)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    x, noise = torch.rand(cfg.batch_size, 3, 28, 28) * 2 - 1, torch.randn(cfg.batch_size, 3, 28, 28)
    t, lab = torch.randint(0, cfg.timesteps, (cfg.batch_size,)), torch.randint(0, 4, (cfg.batch_size,))

    def step():
        loss = F.mse_loss(unet(sched.add_noise(x, noise, t), t, class_labels=lab).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def htnet_attention(q, k, v, scale):
    "HTNet's attention as its fast path and fold-parallel training compute it (`12_foldpar.forward_folds`)."
    return ((q @ k.transpose(-1, -2)) * scale).float().softmax(-1) @ v


def fused_attention(q, k, v, scale):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def same_bits_alone(q, k, v, scale, i: int = 1) -> bool:
    "Whether the fused kernel gives block `i` the same output and the same q, k, v gradients alone as in the batch."
    g = torch.randn(q.shape[0], *q.shape[1:-1], v.shape[-1])
    ins = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = fused_attention(*ins, scale)
    out.backward(g)
    one = [t.detach()[i:i + 1].clone().requires_grad_() for t in (q, k, v)]
    o1 = fused_attention(*one, scale)
    o1.backward(g[i:i + 1])
    return torch.equal(o1, out[i:i + 1]) and all(torch.equal(a.grad, b.grad[i:i + 1]) for a, b in zip(one, ins))


def attention_rows(cfg: dict, folds: int, batch: int, steps: int, rounds: int) -> list:
    L = tokens_per_block(cfg)
    heads, dh = cfg['heads'], cfg['dim'] // cfg['heads']
    rows = []
    for level in range(cfg['num_hierarchies']):
        blocks = 4 ** (cfg['num_hierarchies'] - 1 - level)      # level 0 (finest) has the most blocks
        n = folds * batch * blocks
        q, k, v = (torch.randn(n, heads, L, dh, requires_grad=True) for _ in range(3))
        best = {}
        for f in (htnet_attention, fused_attention):
            f(q, k, v, dh ** -0.5).sum().backward()             # warm-up
        for _ in range(rounds):
            for f in (htnet_attention, fused_attention):
                t = time.perf_counter()
                for _ in range(steps): f(q, k, v, dh ** -0.5).sum().backward()
                best[f.__name__] = min(best.get(f.__name__, float('inf')), (time.perf_counter() - t) / steps)
        with torch.no_grad():
            a, b = htnet_attention(q, k, v, dh ** -0.5), fused_attention(q, k, v, dh ** -0.5)
        alone = same_bits_alone(q, k, v, dh ** -0.5)
        rows.append((f'level {level}: {n} blocks ({folds} folds x {batch} x {blocks}), {heads} heads, {L} tokens, dim_head {dh}',
                     best['htnet_attention'], best['fused_attention'], float((a - b).abs().max()), alone))
    return rows


def counted_flops(step) -> int:
    with FlopCounterMode(display=False) as fc: step()
    return fc.get_total_flops()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='quick')
    ap.add_argument('--steps', type=int, default=5, help='timed steps per round (default 5)')
    ap.add_argument('--rounds', type=int, default=3, help='rounds over all models, the best kept (default 3)')
    ap.add_argument('--folds', type=int, default=8, help='folds per fold-parallel group for the attention shapes (default 8)')
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    p = get_preset(a.preset)
    att = model_configs(p)['attending']
    models = {
        'HTNet (preset configuration)': classifier_step(build_model(p, 'HTNet', pos_emb='lape'), p.batch_size, 3, p.lr),
        'HTNet (49 tokens per block)': classifier_step(build_model(p, 'HTNet', **att, pos_emb='lape'), p.batch_size, 3, p.lr),
        'OFF-ApexNet': classifier_step(build_model(p, 'OFF-ApexNet'), p.batch_size, 2, p.lr),
        'STSTNet': classifier_step(build_model(p, 'STSTNet'), p.batch_size, 3, p.lr),
        'MobileViT': classifier_step(build_model(p, 'MobileViT'), p.batch_size, 3, p.lr),
        f'DDPM U-Net ({a.preset} diffusion)': ddpm_step(DDPMConfig(**DIFFUSION_PRESETS[a.preset]['config'])),
    }
    flops = {k: counted_flops(f) for k, f in models.items()}     # also the warm-up step
    lim = matmul_gflops(torch.float32)
    best = {k: float('inf') for k in models}
    for _ in range(a.rounds):
        for k, f in models.items():
            t = time.perf_counter()
            for _ in range(a.steps): f()
            best[k] = min(best[k], (time.perf_counter() - t) / a.steps)
    print(f'torch {torch.__version__}, 1 thread, CPU capability {torch.backends.cpu.get_cpu_capability()}; '
          f'2048x2048 float32 matrix product: {lim:.1f} GFLOP/s (the limit below)')
    print(f'one training step, preset {a.preset!r}, best of {a.rounds} rounds x {a.steps} steps:\n')
    print('| model | ms / step | matrix GFLOP / step | GFLOP/s | share of the limit |')
    print('|---|---:|---:|---:|---:|')
    for k in models:
        g = flops[k] / best[k] / 1e9
        print(f'| {k} | {best[k] * 1e3:.1f} | {flops[k] / 1e9:.3f} | {g:.1f} | {g / lim:.0%} |')
    cfg = {**p.model, **att}
    print(f'\nattention of the 49-token configuration, forward + backward, best of {a.rounds} rounds x {a.steps}:\n')
    print('| attention call | HTNet ms | fused (SDPA) ms | HTNet / fused | largest difference | fused: same bits alone (output and gradients) |')
    print('|---|---:|---:|---:|---:|---|')
    for name, th, tf, d, alone in attention_rows(cfg, a.folds, p.batch_size, a.steps, a.rounds):
        print(f'| {name} | {th * 1e3:.1f} | {tf * 1e3:.1f} | {th / tf:.2f}x | {d:.1e} | {alone} |')


if __name__ == '__main__':
    main()
