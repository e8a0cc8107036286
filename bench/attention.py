"""Agent attention against HTNet's softmax attention: forward wall time per block size, one thread.

    python bench/attention.py [--reps 5]
"""
import argparse
import time

import pandas as pd
import torch

from mer_nb.agent import AgentAttention
from mer_nb.htnet import Attention


def attention_ms(sides=(4, 8, 16, 32, 48), dim: int = 256, heads: int = 4, agents: int = 16, batch: int = 2, reps: int = 5):
    "Median forward wall time (ms) of HTNet's softmax attention and of agent attention on square blocks of `side^2` tokens."
    def ms(mod, side):
        x = torch.randn(batch, dim, side, side)
        with torch.no_grad():
            mod(x)
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter(); mod(x); ts.append(time.perf_counter() - t0)
        return 1e3 * sorted(ts)[len(ts) // 2]
    t = pd.DataFrame([{'tokens N': s * s, 'softmax ms': ms(Attention(dim, heads), s), 'agent ms': ms(AgentAttention(dim, heads, (s, s), agents), s)}
                      for s in sides])
    t['agent / softmax'] = t['agent ms'] / t['softmax ms']
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--reps', type=int, default=5)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t = attention_ms(reps=a.reps)
    print(f'width 256, 4 heads, 16 agents, batch 2, 1 thread, median of {a.reps}; torch {torch.__version__}')
    print(t.round(2).to_string(index=False))


if __name__ == '__main__':
    main()
