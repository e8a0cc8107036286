"""LOSO with the quick preset: fold-parallel (`run_cv(fold_batch='auto')`) against one fold at a time, same workers.

    python bench/foldpar_loso.py --data ../shared/data/megc2019_composite            # all 68 folds, 2 workers
    python bench/foldpar_loso.py --folds 8 --workers 1                                # a first look
    python bench/foldpar_loso.py --data ... --workers 1 --baseline reference          # one at a time on the reference HTNet path
    python bench/foldpar_loso.py --data ... --folds 6 --seeds 0,1,2                   # fold x seed groups against groups within a seed
    python bench/foldpar_loso.py --data ... --folds 6 --seeds 0,1 --method ESAAT --model-kw '{"pos_emb": "lape"}'
    python bench/foldpar_loso.py --data ... --folds 4 --seeds 0,1 --epochs 20 --model-kw '{"pos_emb": "lape"}' \\
        --method HTNet,ESAAT,STSTNet,OFF-ApexNet,MobileViT                       # everything issue 16 changed, one run

Trains every fold (x seed) once per arm into a temporary folder (nothing is resumed from earlier runs) and prints
the wall time and the core-seconds (CPU time of the process and its workers, the steadier measure on a busy
machine) of each arm, their ratios to the first arm's, how many fold records are bit-identical to the first arm's
(every array but the timing: per-epoch test logits, training losses, indices, a post_train step's results), how
many test predictions agree, and the UF1 of each under the `last` selection. The arms:

- one fold at a time with `torch.optim.Adam` (the compiled kernel switched off: `run_cv` as before issue 16);
- for a model that cannot be batched (the trained baselines): one fold at a time with `foldpar.fast_adam`, the
  same Adam in one compiled pass (what `run_cv` does now);
- with several seeds: fold-parallel with the groups of before issue 16 (`cv._groups` keyed by seed and regime);
- fold-parallel over all seeds at once (groups mixing seeds). A method with a `post_train` step (ESAAT) ran one
  fold at a time before; now its training is fold-parallel and the step runs per fold.

Not a test.
"""
import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _equal(x: np.ndarray, y: np.ndarray) -> bool:
    "Bit for bit equal arrays; NaN equals NaN (ESAAT's scores of removed sub-layers)."
    return np.array_equal(x, y, equal_nan=x.dtype.kind in 'fc' and y.dtype.kind in 'fc')


def _same(a: Path, b: Path) -> tuple[int, int, set]:
    "(records under `b` whose arrays all equal those under `a`, records, the fold_batch values seen under `b`)."
    same, n, fbs = 0, 0, set()
    for p in sorted(a.rglob('*.npz')):
        with np.load(p) as r1, np.load(b / p.relative_to(a)) as r2:
            n += 1
            keys = set(r1.files) - {'seconds', 'fold_batch'}
            same += keys == set(r2.files) - {'seconds', 'fold_batch'} and all(_equal(r1[k], r2[k]) for k in keys)
            fbs.add(int(r2['fold_batch']) if 'fold_batch' in r2.files else 1)
    return same, n, fbs


def _cpu() -> float:
    "CPU seconds (user + system) of this process and of its finished children (the worker processes of finished pools)."
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ('ru_utime', 'ru_stime'))


def add_common(ap) -> None:
    "The options every LOSO benchmark here takes: data, preset, epochs, the folds tested, seeds, workers."
    ap.add_argument('--data', default=None, help='composite folder (default: the embedded synthetic set)')
    ap.add_argument('--preset', default='quick')
    ap.add_argument('--epochs', type=int, default=None, help="override the preset's epochs (a shorter benchmark)")
    ap.add_argument('--folds', type=int, default=None, help='only the first N subjects as test folds (default: all)')
    ap.add_argument('--seeds', default='0', help='comma-separated seeds (default: 0)')
    ap.add_argument('--workers', type=int, default=2)


def open_common(a):
    """(dataset, preset, seeds) of `add_common`'s options; with `--folds N` every subject still trains, but only the first
    N subjects' folds are tested (`cv.make_folds` narrowed in this process)."""
    import mer_nb.cv as CV
    import mer_nb.recipe as R
    from mer_nb.sources import open_dataset
    ds = open_dataset(a.data, R.get_preset(a.preset).synthetic, kinds=('synthetic', 'composite'))
    if a.folds:
        keep = set(sorted(set(ds.subjects.astype(str)))[:a.folds])
        orig = CV.make_folds
        CV.make_folds = lambda subjects, *args, **kw: [f for f in orig(subjects, *args, **kw) if f[0][4:] in keep]
    return ds, R.get_preset(a.preset, **({'epochs': a.epochs} if a.epochs else {})), tuple(int(s) for s in a.seeds.split(','))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_common(ap)
    ap.add_argument('--method', default='HTNet', help='registered torch methods, comma-separated (HTNet, ESAAT, STSTNet, ...)')
    ap.add_argument('--model-kw', default=None, help='HTNet/ESAAT keyword arguments as JSON, e.g. \'{"pos_emb": "lape"}\'')
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
    import mer_nb.esaat  # noqa: F401  (registers ESAAT)
    import mer_nb.baselines  # noqa: F401  (registers the baselines)
    from mer_nb.metrics import uf1
    model_kw = json.loads(a.model_kw) if a.model_kw else None
    ds, pre, seeds = open_common(a)
    methods = a.method.split(',')
    _warm_up(CV, ds, pre, methods, model_kw)
    for m in methods:
        _bench(a, FP, H, R, CV, uf1, ds, pre, seeds, m, model_kw if m in ('HTNet', 'ESAAT') else None)


def _warm_up(CV, ds, pre, methods, model_kw):
    "One tiny training per method in this process first, so that the first arm does not pay one-time costs alone (--workers 1)."
    from dataclasses import replace
    import mer_nb.recipe as R
    from mer_nb.train import train_fold
    for m in methods:
        x = R.get_method(m).inputs(ds)[:64]
        train_fold(x, ds.labels[:64], {'test': x[:8]}, replace(pre, epochs=1), device='cpu', method=m,
                   model_kw=model_kw if m in ('HTNet', 'ESAAT') else None)


def _bench(a, FP, H, R, CV, uf1, ds, pre, seeds, method, model_kw):
    with torch.device('meta'): batchable = FP.can_batch(R.build_model(pre, method, **(model_kw or {}))) is None
    arms = [('one at a time, torch Adam', 1, False)]      # (name, fold_batch, groups within a seed)
    if not batchable: arms.append(('one at a time, one-pass Adam', 1, False))
    else:
        if len(seeds) > 1: arms.append(('fold-parallel, groups within a seed', a.fold_batch, True))
        arms.append(('fold-parallel' + (', fold x seed groups' if len(seeds) > 1 else ''), a.fold_batch, False))
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for i, (name, fb, per_seed) in enumerate(arms):
            ref = i == 0 and a.baseline == 'reference'
            H.set_fast_path(not ref)    # HTNets built from now on in this process (the --workers 1 run) take this path
            if i == 0: os.environ['MER_NB_FUSED_ADAM'] = '0'      # read by fused_adam() in this process and in the workers
            FP._FUSED.clear()
            kw = dict(selections=('last',), workers=a.workers, fold_batch=fb, progress=False, device='cpu', method=method, model_kw=model_kw)
            t, c = time.perf_counter(), _cpu()
            groups = CV._groups
            if per_seed: CV._groups = lambda jobs, fb: groups(jobs, fb, key=lambda j: (j['seed'], j['regime']))   # as before issue 16
            try: pr = CV.run_cv(ds, pre, f'{d}/{i}', seeds=seeds, **kw)
            finally: CV._groups = groups
            out[name] = (time.perf_counter() - t, pr, _cpu() - c)
            H.set_fast_path(True)
            os.environ.pop('MER_NB_FUSED_ADAM', None)
            FP._FUSED.clear()
        checks = {name: _same(Path(d, '0'), Path(d, str(i))) for i, (name, _, _) in enumerate(arms)}
    ts, ps, cs = out[arms[0][0]]
    print(f'{pre.name} preset ({pre.epochs} epochs), {method}{" " + json.dumps(model_kw) if model_kw else ""}, '
          f'{ps.fold.nunique()} LOSO folds x {len(seeds)} seed(s) of {ds.name} ({len(ps)} test predictions), '
          f'{a.workers} worker(s), 1 thread each')
    for name, _, _ in arms:
        t, p, c = out[name]
        same, n, fbs = checks[name]
        print(f'  {name:38s} {t:7.1f} s wall {ts / t:5.2f}x   {c:7.1f} core-s {cs / c:5.2f}x   UF1 {uf1(p.label, p.pred):.4f}   groups of {"/".join(map(str, sorted(fbs)))}   '
              f'predictions agreeing {np.mean(ps.pred.to_numpy() == p.pred.to_numpy()):.1%}   records bit-identical {same} of {n}')
    if len(arms) == 3:
        (t1, _, c1), (t2, _, c2) = out[arms[1][0]], out[arms[2][0]]
        print(f'  fold x seed groups against groups within a seed: {t1 / t2:.2f}x wall, {c1 / c2:.2f}x core-seconds')
    print(f"  compiled one-pass Adam (after the first arm): {'in use' if FP.fused_adam() else 'not used (' + FP._FUSED['why'] + ')'}")


if __name__ == '__main__':
    main()
