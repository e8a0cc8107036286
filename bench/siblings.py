"""Table 5's ESAAT runs (ESAAT and its controls) each trained by its own `run_cv`, against one family run that trains
each fold's HTNet+LAPE once and writes every sibling's record from it (`run_cv(siblings=)`).

    OMP_NUM_THREADS=1 python bench/siblings.py --data ../shared/data/megc2019_composite --folds 3 --seeds 0,1
    OMP_NUM_THREADS=1 python bench/siblings.py --folds 4 --epochs 20                  # the embedded synthetic set, shorter

As in `reproduce`, where Table 4 has already trained HTNet+LAPE when Table 5 starts, both arms begin with the
HTNet+LAPE records on disk (trained once, untimed, and copied to each arm). The first arm then runs `run_cv` once per
method (ESAAT, ESAAT-random0..2, ESAAT-none: each trains HTNet+LAPE again before its step); the second runs
`run_cv('HTNet', siblings=...)` once, which trains HTNet+LAPE once per fold and applies the five steps, then each
method's own `run_cv` (reading its records). Prints the wall time and core-seconds (CPU time of the process and its
workers) of each arm, their ratio, and how many of the second arm's records equal the first arm's bit for bit
(every array but `seconds` and `fold_batch`). Not a test.
"""
import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from foldpar_loso import _cpu, _same, add_common, open_common


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_common(ap)
    a = ap.parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import mer_nb.cv as CV
    from mer_nb.esaat import RANDOM_DRAWS
    ds, pre, seeds = open_common(a)
    family = ['ESAAT', *(f'ESAAT-random{d}' for d in range(RANDOM_DRAWS)), 'ESAAT-none']
    kw = dict(seeds=seeds, selections=('last',), model_kw={'pos_emb': 'lape'}, workers=a.workers, device='cpu', progress=False)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        CV.run_cv(ds, pre, d / 'base', **kw)                      # HTNet+LAPE, as Table 4 leaves it
        out = {}
        for arm in ('alone', 'siblings'):
            shutil.copytree(d / 'base', d / arm)
            t, c = time.perf_counter(), _cpu()
            if arm == 'siblings': CV.run_cv(ds, pre, d / arm, method='HTNet', siblings=family, **kw)
            preds = [CV.run_cv(ds, pre, d / arm, method=m, **kw) for m in family]
            out[arm] = (time.perf_counter() - t, _cpu() - c, preds)
        same, n, _ = _same(d / 'alone', d / 'siblings')
    (ta, ca, pa), (ts, cs, ps) = out['alone'], out['siblings']
    agree = all((x.pred.to_numpy() == y.pred.to_numpy()).all() for x, y in zip(pa, ps))
    print(f'{pre.name} preset ({pre.epochs} epochs, ESAAT fine-tunes {max(1, round(0.1 * pre.epochs))}), {len(family)} ESAAT runs '
          f'({", ".join(family)}), {pa[0].fold.nunique()} LOSO folds x {len(seeds)} seed(s) of {ds.name}, {a.workers} worker(s), 1 thread each')
    print(f'  each run alone:            {ta:7.1f} s wall   {ca:7.1f} core-s')
    print(f'  siblings of one training:  {ts:7.1f} s wall   {cs:7.1f} core-s   {ta / ts:.2f}x wall, {ca / cs:.2f}x core-seconds')
    print(f'  records bit-identical (HTNet+LAPE and the {len(family)} ESAAT runs): {same} of {n}; predictions identical: {agree}')


if __name__ == '__main__':
    main()
