"""HTNet train step: the fast path against the reference forward, same parameters, one process.

    python bench/htnet_step.py                       # paper configuration, batch 256 (the published setting)
    python bench/htnet_step.py --preset quick --batch 32 --steps 50

Prints ms per Adam step (forward, backward, update) for each, interleaved so that machine load hits both alike,
the ratio, and the largest logit difference on the same parameters. Not a test: no timing is asserted anywhere.
"""
import argparse
import copy
import time

import torch
import torch.nn.functional as F

from mer_nb.recipe import build_model, get_preset


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='paper', help='model configuration of this preset (default: paper)')
    ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--steps', type=int, default=3, help='timed steps per round')
    ap.add_argument('--rounds', type=int, default=3, help='rounds, alternating reference and fast')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    pre = get_preset(a.preset)
    torch.manual_seed(0)
    x, y = torch.rand(a.batch, 3, 28, 28), torch.randint(0, 3, (a.batch,))
    ref = build_model(pre)
    fast = copy.deepcopy(ref)
    ref.fast, fast.fast = False, True
    with torch.no_grad():
        diff = (ref(x) - fast(x)).abs().max().item()
    opts = {m: torch.optim.Adam(m.parameters(), lr=pre.lr) for m in (ref, fast)}

    def step(m):
        loss = F.cross_entropy(m(x), y)
        opts[m].zero_grad(set_to_none=True)
        loss.backward()
        opts[m].step()

    times = {'reference': [], 'fast': []}
    for m in (ref, fast): step(m)          # warm-up
    for _ in range(a.rounds):
        for name, m in (('reference', ref), ('fast', fast)):
            t = time.perf_counter()
            for _ in range(a.steps): step(m)
            times[name].append((time.perf_counter() - t) / a.steps)
    r, f = min(times['reference']), min(times['fast'])
    print(f'HTNet train step, preset {a.preset!r} model, batch {a.batch}, {torch.get_num_threads()} thread(s), torch {torch.__version__}')
    print(f'  reference {r * 1e3:9.1f} ms/step   fast {f * 1e3:9.1f} ms/step   speed-up {r / f:.2f}x   '
          f'(best of {a.rounds} rounds x {a.steps} steps; max |logit diff| at start {diff:.1e})')


if __name__ == '__main__':
    main()
