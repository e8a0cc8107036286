"""LOSO with the quick preset: fold-parallel (`run_cv(fold_batch='auto')`) against one fold at a time, same workers.

    python bench/foldpar_loso.py --data ../shared/data/megc2019_composite            # all 68 folds, 2 workers
    python bench/foldpar_loso.py --folds 8 --workers 1                                # a first look
    python bench/foldpar_loso.py --data ... --workers 1 --baseline reference          # one at a time on the reference HTNet path

Trains every fold twice into a temporary folder (nothing is resumed from earlier runs) and prints the wall time of
each, their ratio, how many fold records have bit-identical per-epoch test logits and training losses, how many
test predictions agree, and the UF1 of each under the `last` selection. Not a test.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default=None, help='composite folder (default: the embedded synthetic set)')
    ap.add_argument('--preset', default='quick')
    ap.add_argument('--folds', type=int, default=None, help='only the first N subjects as test folds (default: all)')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--fold-batch', default='auto')
    ap.add_argument('--baseline', choices=['fast', 'reference'], default='fast',
                    help='HTNet path of the one-fold-at-a-time run (default: fast, the same as the fold-parallel run)')
    a = ap.parse_args(argv)
    if a.baseline == 'reference' and a.workers != 1:
        ap.error('--baseline reference needs --workers 1 (the reference path is switched on in this process only)')
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import mer_nb.foldpar as FP
    import mer_nb.htnet as H
    import mer_nb.recipe as R
    import mer_nb.cv as CV
    from mer_nb.sources import open_dataset
    from mer_nb.metrics import uf1
    ds = open_dataset(a.data, R.get_preset(a.preset).synthetic, kinds=('synthetic', 'composite'))
    if a.folds:      # keep every subject for training, test only on the first N folds' subjects
        keep = set(sorted(set(ds.subjects.astype(str)))[:a.folds])
        orig = CV.make_folds
        CV.make_folds = lambda subjects, *args, **kw: [f for f in orig(subjects, *args, **kw) if f[0][4:] in keep]
    pre = R.get_preset(a.preset)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, fb in (('one at a time', 1), ('fold-parallel', a.fold_batch)):
            ref = name == 'one at a time' and a.baseline == 'reference'
            H.set_fast_path(not ref)    # HTNets built from now on in this process (the --workers 1 run) take this path
            t = time.perf_counter()
            pr = CV.run_cv(ds, pre, f'{d}/{fb}', selections=('last',), workers=a.workers, fold_batch=fb, progress=False, device='cpu')
            out[name] = (time.perf_counter() - t, pr)
            H.set_fast_path(True)
        same, n_rec, fb_used = 0, 0, set()
        for p in sorted(Path(d, '1').rglob('*.npz')):
            q = Path(d, str(a.fold_batch), p.relative_to(Path(d, '1')))
            with np.load(p) as r1, np.load(q) as r2:
                n_rec += 1
                same += np.array_equal(r1['test_logits'], r2['test_logits']) and np.array_equal(r1['train_loss'], r2['train_loss'])
                fb_used.add(int(r2['fold_batch']) if 'fold_batch' in r2 else 1)
    (ts, ps), (tp, pp) = out['one at a time'], out['fold-parallel']
    n_folds = ps.fold.nunique()
    print(f'{a.preset} preset, {n_folds} LOSO folds of {ds.name} ({len(ps)} test samples), {a.workers} worker(s), 1 thread each')
    print(f'  one at a time ({a.baseline} HTNet): {ts:7.1f} s   UF1 {uf1(ps.label, ps.pred):.4f}')
    print(f'  fold-parallel ({a.fold_batch}, {"/".join(map(str, sorted(fb_used)))} folds per group): {tp:7.1f} s   UF1 {uf1(pp.label, pp.pred):.4f}')
    print(f"  fold-parallel Adam: {'the compiled one-pass kernel' if FP.fused_adam() else 'torch operations (' + FP._FUSED['why'] + ')'}")
    print(f'  speed-up {ts / tp:.2f}x   predictions agreeing {np.mean(ps.pred.to_numpy() == pp.pred.to_numpy()):.1%}   '
          f'fold records bit-identical (every epoch\'s test logits and loss) {same} of {n_rec}')


if __name__ == '__main__':
    main()
