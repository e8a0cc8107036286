"""HTNet train step in fp32 and bf16 (`Preset.precision`), against what this machine's matrix products can do.

    python bench/precision.py                                  # paper configuration at batch 256, then quick at 32
    python bench/precision.py --configs paper:32 --steps 1    # a shorter look

Prints, in one run: the throughput of a 2048x2048 matrix product in float32 and in bfloat16 (the practical limit
of each precision here), then for each configuration the fast-path Adam step (forward under `recipe.autocast`,
float32 loss, backward, update) in fp32 and in bf16, interleaved so that machine load hits both alike, the bf16
speed-up, and each one's achieved GFLOP/s of the counted FLOPs (`htnet.count_flops`, x3 for forward and backward)
as a fraction of that precision's matrix-product limit. On a CPU without native bfloat16 (no AVX-512 BF16 or AMX:
`torch.backends.cpu.get_cpu_capability()` prints e.g. AVX2) bfloat16 is emulated and the ratio is below 1.
Not a test: no timing is asserted anywhere.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from mer_nb.htnet import count_flops
from mer_nb.recipe import autocast, build_model, get_preset


def matmul_gflops(dtype, n: int = 2048, reps: int = 3) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps): a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def step_fn(preset, batch: int):
    torch.manual_seed(0)
    m = build_model(preset)
    opt = torch.optim.Adam(m.parameters(), lr=preset.lr)
    x, y = torch.rand(batch, 3, 28, 28), torch.randint(0, 3, (batch,))

    def step():
        with autocast(preset, 'cpu'): out = m(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step, count_flops(m) * 3 * batch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--configs', default='paper:256,quick:32', help='preset:batch pairs (default: paper:256,quick:32)')
    ap.add_argument('--steps', type=int, default=2, help='timed steps per round (default: 2)')
    ap.add_argument('--rounds', type=int, default=2, help='rounds, alternating fp32 and bf16 (default: 2)')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    lim = {'fp32': matmul_gflops(torch.float32), 'bf16': matmul_gflops(torch.bfloat16)}
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU capability {torch.backends.cpu.get_cpu_capability()}')
    print(f'  2048x2048 matrix product: float32 {lim["fp32"]:.1f} GFLOP/s, bfloat16 {lim["bf16"]:.1f} GFLOP/s '
          f'(bf16/fp32 {lim["bf16"] / lim["fp32"]:.2f}x)')
    for spec in a.configs.split(','):
        name, batch = spec.split(':')
        batch = int(batch)
        fns = {p: step_fn(get_preset(name, precision=p), batch) for p in ('fp32', 'bf16')}
        for f, _ in fns.values(): f()                       # warm-up
        times = {p: [] for p in fns}
        for _ in range(a.rounds):
            for p, (f, _) in fns.items():
                t = time.perf_counter()
                for _ in range(a.steps): f()
                times[p].append((time.perf_counter() - t) / a.steps)
        best = {p: min(v) for p, v in times.items()}
        flops = fns['fp32'][1]
        g = {p: flops / best[p] / 1e9 for p in best}
        print(f'HTNet train step, preset {name!r} model, batch {batch} ({flops / 1e9:.1f} GFLOP counted per step):')
        for p in best:
            print(f'  {p}: {best[p] * 1e3:9.1f} ms/step  {g[p]:7.1f} GFLOP/s = {g[p] / lim[p]:.0%} of the {p} matrix-product limit')
        print(f'  bf16 speed-up: {best["fp32"] / best["bf16"]:.2f}x  (best of {a.rounds} rounds x {a.steps} steps)')


if __name__ == '__main__':
    main()
