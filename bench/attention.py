"""Agent attention against HTNet's softmax attention: forward wall time per block size, one thread (mer_nb.agent.attention_ms).

    python bench/attention.py [--reps 5]
"""
import argparse

import torch

from mer_nb.agent import attention_ms


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
