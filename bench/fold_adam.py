"""Adam on G folds' stacked state: the compiled one-pass kernel against torch's element-wise operations, one process.

    python bench/fold_adam.py                          # quick preset, 7 folds (run_cv's groups for 68 folds, 2 workers)
    python bench/fold_adam.py --preset paper --folds 2

Times `_adam_step` both ways (the kernel, parameter by parameter on autograd-shaped gradients; `_adam_` on the
gathered (G, N) gradient, the fallback), interleaved so that machine load hits both alike, and prints ms per step,
their ratio, and whether one step gives the same bits both ways. Not a test.
"""
import argparse
import time

import numpy as np
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='quick')
    ap.add_argument('--folds', type=int, default=7)
    ap.add_argument('--steps', type=int, default=20, help='timed steps per round')
    ap.add_argument('--rounds', type=int, default=5)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    import mer_nb.foldpar as FP
    from mer_nb.recipe import build_model, get_preset
    fn = FP.fused_adam()
    if fn is None: raise SystemExit(f"the compiled kernel is not available here: {FP._FUSED['why']}")
    base = build_model(get_preset(a.preset), 'HTNet')
    S = FP._Flat(base, a.folds, 'cpu')
    gen = torch.Generator().manual_seed(0)
    # gradients shaped as autograd returns them: conv weights as views of their channels-last storage
    grads = [torch.randn(a.folds, *s, generator=gen) for s in S.shapes]
    grads = [g.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if cl else g for g, cl in zip(grads, S.cl)]
    steps = np.arange(1, a.folds + 1, dtype=float)
    state = [t.clone() for t in (S.p, S.m1, S.m2)]
    FP._adam_step(S, *state, grads, steps, 1e-3, 1e-4)
    eager = [t.clone() for t in (S.p, S.m1, S.m2)]
    FP._adam_(eager[0], S.gather(grads), eager[1], eager[2], steps, 1e-3, 1e-4)
    same = all(torch.equal(x, y) for x, y in zip(state, eager))
    ways = {'torch operations': lambda: FP._adam_(S.p, S.gather(grads), S.m1, S.m2, steps, 1e-3, 1e-4),
            'compiled kernel': lambda: FP._adam_step(S, S.p, S.m1, S.m2, grads, steps, 1e-3, 1e-4)}
    best = {k: float('inf') for k in ways}
    for _ in range(a.rounds):
        for k, f in ways.items():
            t = time.perf_counter()
            for _ in range(a.steps): f()
            best[k] = min(best[k], (time.perf_counter() - t) / a.steps * 1e3)
    n = S.p.shape[1]
    print(f'{a.preset} preset, {a.folds} folds x {n:,} floats (weights with alignment gaps), 1 thread')
    for k, v in best.items(): print(f'  {k:17s} {v:8.2f} ms per step')
    print(f"  speed-up {best['torch operations'] / best['compiled kernel']:.2f}x   same bits after one step: {same}")


if __name__ == '__main__':
    main()
