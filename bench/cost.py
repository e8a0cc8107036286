"""Cost table: core-seconds of one seed per artefact and method (a preset, by default `quick`, on the composite), and the
projected wall time of `mer-nb reproduce --seeds 0,1,2,3,4` (every artefact) on this machine's cores.

    python bench/cost.py                                   # time a sample of folds of every run (half an hour on 2 cores)
    python bench/cost.py --sample 3 --seeds 0,1            # more folds, and two seeds trained together (as run_cv groups them)
    python bench/cost.py --runs reports/composite-quick/runs   # read the fold records of a finished run instead
    python bench/cost.py --methods LBP-TOP,Bi-WOOF             # time only some runs (the others print nan)

The runs are the ones the artefacts declare (`mer_nb.experiments.ARTEFACTS`, each artefact's arms at its default options;
`plan` writes nothing per table, so a newly registered artefact is counted without an edit here) (Table 1: HTNet and the baselines; Table 4: none/scalar/LAPE at the preset's
and the attending configuration; Table 5: their LAPE runs, and ESAAT with its random-removal and fine-tune-only controls
as one family run -- siblings of one HTNet+LAPE training per fold, timed together; the last line also projects them
trained each on its own, as before `run_cv(siblings=)`, adding one HTNet+LAPE run per control; Tables 2 and 3: HTNet+LAPE+ESAAT without and with
diffusion augmentation, subject-grouped 5-fold and LOSO; the noise floor: HTNet on a second, disjoint set of seeds); a run
several artefacts share (same run key and seeds) is counted once,
under the first artefact `reproduce` runs. Figure 1 trains nothing. Table 1's trained baselines run on the first 3 seeds
(`table1(baseline_seeds=3)`); the projection counts them so, and its last line also without that.

With `--runs`: each fold record's `seconds` (one thread per fold; with fold batching the group's time shared out, so the
sum over a seed's folds is exact) summed per seed, averaged over the seeds found.

Without: for every run, `--sample` folds (spread over training-set sizes) are trained through `run_cv` in this process
(one thread; the sampled folds and seeds grouped as run_cv groups them, so batching across at most that many folds and
seeds is measured), at two short epoch counts (`--epochs`, default 5 and 15; the diffusion fit's steps scaled alike),
and the CPU time is extrapolated linearly to the preset's epochs and scaled to all folds. The diffusion fits (fit and
sample pool, shared by the folds of a subject group under LOSO) and the method's input features (computed once per run)
are timed apart and counted once per fit / per run. The projection divides each run's core-seconds by the processes
that run it in parallel (the preset's workers, 1 for the scikit-learn baselines, at most `--cores`); the bootstrap,
figures and notebook start-up are not counted.
"""
import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import multiprocessing as mp

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COMPOSITE = ROOT.parent/'shared'/'data'/'megc2019_composite'
def plan(p, k: int = 5, seeds=(0,), data=None, artefacts=None) -> list[dict]:
    """Every training run of every registered artefact that `reproduce` makes (`experiments.ARTEFACTS`, in its order), as
    run_cv arguments, read from each artefact's declared arms (`Artefact.arms`) at its default options: nothing here is
    written per table. `seeds`: the reproduction's; `artefacts`: a Python file registering more. An arm whose training
    also writes its `siblings`' records (Table 5's ESAAT and its controls) becomes a family row, its members shared."""
    import tempfile
    from mer_nb.experiments import Experiment, load_artefacts
    from mer_nb.recipe import get_method, uses_faces
    arts = load_artefacts(artefacts)
    exp = Experiment.create(p, data, out=Path(tempfile.mkdtemp())/'plan', seeds=tuple(seeds), k=k, progress=False)
    rows = []
    for name, art in arts.items():
        if not art.in_all: continue        # an extra (tune): not part of a reproduction; it states its own cost before it trains
        arms = art.arms(exp) if art.arms else []
        fam = {}                           # sibling method -> the row of the family run that writes its records
        for a in arms:
            cols = ''.join(f' ({v})' for v in a.columns.values() if v not in (None, 'none')) + (' + diffusion' if a.augment is not None else '')
            row = dict(artefact=name, row=a.name + cols, method=a.method, model_kw=a.model_kw, protocol=a.protocol or exp.protocol, k=a.k or k,
                       faces=uses_faces(a.method), augment=a.augment is not None, workers=1 if get_method(a.method).kind == 'sklearn' else p.workers,
                       seeds=tuple(a.seeds or exp.seeds), max_seeds=len(a.seeds) if a.seeds and set(a.seeds) <= set(exp.seeds) else None)
            if (a.method, str(a.model_kw)) in fam: row['family'] = fam[(a.method, str(a.model_kw))]
            rows.append(row)
            if a.siblings:                 # the family run: the first sibling with the others, one base training per fold
                first, *rest = a.siblings
                fr = dict(row, row=f'{first} and its {len(rest)} sibling(s){cols}', method=first, siblings=list(rest), base=row['row'])
                rows.append(fr)
                fam.update({(m, str(a.model_kw)): fr['row'] for m in a.siblings})
    return rows


def _augment(p, cache):
    from mer_nb.diffusion import DiffusionAugment
    return DiffusionAugment.for_preset(p, cache=cache)


def _key(r, ds, p, cache='/nonexistent') -> str:
    from mer_nb.store import run_key
    return run_key(ds, p, r['protocol'], r['k'], 'full', r['model_kw'], r['method'], _augment(p, cache) if r['augment'] else None)


def _dataset(data, p, faces: bool):
    from mer_nb.sources import open_dataset
    return open_dataset(data, p.synthetic, faces=faces, kinds=('synthetic', 'composite'), progress=False)


class _Timed:
    "The diffusion augmentation, with the CPU time of its calls (fit + sample pools) added up."
    def __init__(self, aug): self.aug, self.cpu = aug, 0.0
    def __repr__(self): return repr(self.aug)
    def __call__(self, *a, **kw):
        t = time.process_time()
        try: return self.aug(*a, **kw)
        finally: self.cpu += time.process_time() - t


def _extrapolate(v1, v2, e1, e2, e):
    "The value at `e` epochs on the line through (e1, v1), (e2, v2); the slope clamped at >= 0 (timing noise)."
    return v2 + max(0.0, (v2 - v1) / (e2 - e1)) * (e - e2)


def measure(r: dict, data, preset: str, sample: int, seeds, epochs, tmp) -> dict:
    "CPU seconds of one seed of run `r` (all folds), from `sample` folds at two epoch counts, extrapolated."
    os.environ['OMP_NUM_THREADS'] = '1'
    import torch
    torch.set_num_threads(1)
    import mer_nb.cv as CV
    from mer_nb.diffusion import fit_records
    from mer_nb.experiments import load_artefacts
    load_artefacts()                              # the artefact modules register every method they run (ESAAT, baselines)
    from mer_nb.recipe import get_method, get_preset, method_inputs
    p = get_preset(preset)
    ds = _dataset(data, p, r['faces'])
    spec = get_method(r['method'])
    folds = CV.make_folds(ds.subjects, r['protocol'], r['k'])
    order = sorted(range(len(folds)), key=lambda i: -len(folds[i][1]))
    pick = [folds[order[i]] for i in np.unique(np.linspace(0, len(folds) - 1, min(sample, len(folds))).round().astype(int))]
    orig = CV.make_folds
    CV.make_folds = lambda *a, **kw: pick
    p_in = get_preset(p, epochs=epochs[0])
    t = time.process_time(); method_inputs(spec, ds, p_in); t_inputs = time.process_time() - t          # once per run
    t = time.process_time(); method_inputs(spec, ds, p_in); t_again = time.process_time() - t          # what run_cv pays again (cached or not)
    sk = spec.kind == 'sklearn'
    out = {}
    try:
        for e in (epochs[:1] if sk else epochs):
            steps = None
            if r['augment']:
                full = _augment(p, None).config.train_steps
                steps = max(1, round(full * e / p.epochs))
            pe = get_preset(p, epochs=e, diffusion={**p.diffusion, 'config': {**p.diffusion.get('config', {}), 'train_steps': steps}} if steps else p.diffusion)
            d = Path(tmp)/f'{os.getpid()}-{time.time_ns()}'
            aug = _Timed(_augment(pe, d/'diffusion')) if r['augment'] else None
            t = time.process_time()
            CV.run_cv(ds, pe, d, r['protocol'], r['k'], seeds, ('last',), r['model_kw'], r['method'], workers=1, device='cpu',
                      progress=False, augment=aug, siblings=r.get('siblings', ()))
            cpu = max(0.0, time.process_time() - t - t_again)
            n_fit = len(fit_records(d/'diffusion')) if r['augment'] else 0
            aug_cpu = aug.cpu if aug else 0.0
            out[e] = ((cpu - aug_cpu) / (len(pick) * len(seeds)), aug_cpu / max(1, n_fit) / 1.0, n_fit)
    finally:
        CV.make_folds = orig
    if sk: fold, fit = out[epochs[0]][0], 0.0
    else:
        (f1, a1, _), (f2, a2, _) = out[epochs[0]], out[epochs[1]]
        fold = _extrapolate(f1, f2, *epochs, p.epochs)
        fit = _extrapolate(a1, a2, *epochs, p.epochs) if r['augment'] else 0.0
    n_folds = len(folds)
    groups = _augment(p, None).groups if r['augment'] else 0
    n_fits = (groups if r['protocol'] == 'loso' and groups > 1 else n_folds) if r['augment'] else 0
    return dict(folds=n_folds, sampled=len(pick), per_fold=fold, fits=n_fits, per_fit=fit, inputs=t_inputs,
                seed_core_s=fold * n_folds + fit * n_fits + t_inputs)


def from_records(r: dict, rdirs, n_folds: int) -> dict:
    """Core-seconds of one seed of run `r` from its fold records under `rdirs` (its run key's folder, and its siblings'
    for a family run: their records share the training's seconds out), the mean over the seeds found."""
    per_seed, fb, found = [], set(), 0
    for sd in sorted(rdirs[0].glob('seed*')):
        secs = []
        for f in sd.glob('*.npz'):
            with np.load(f) as z:
                secs.append(float(z['seconds']))
                fb.add(int(z['fold_batch']) if 'fold_batch' in z.files else 1)
        sib = [float(np.load(q)['seconds']) for rd in rdirs[1:] for q in (rd/sd.name).glob('*.npz')]
        if secs:
            per_seed.append((sum(secs) + sum(sib)) * n_folds / len(secs))    # scaled up when folds are missing
            found = max(found, len(secs))
    if not per_seed: return {}
    return dict(folds=n_folds, found=found, seeds_found=len(per_seed), fold_batch=sorted(fb), seed_core_s=float(np.mean(per_seed)))


def _fmt_h(s: float) -> str:
    return f'{s / 3600:.1f} h' if s >= 3600 else f'{s / 60:.0f} min'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default=os.environ.get('MER_NB_COMPOSITE') or str(COMPOSITE), help='composite folder (default: the shared composite)')
    ap.add_argument('--preset', default='quick')
    ap.add_argument('--runs', default=None, help='a run cache (<out>/runs of `mer-nb reproduce`): read its fold records instead of timing')
    ap.add_argument('--sample', type=int, default=2, help='folds timed per run (default 2)')
    ap.add_argument('--seeds', default='0', help='seeds trained together per sampled fold (default 0); costs are per seed')
    ap.add_argument('--epochs', default='5,15', help='the two short epoch counts timed and extrapolated from (default 5,15)')
    ap.add_argument('--jobs', type=int, default=2, help='runs timed at once, one process each (default 2)')
    ap.add_argument('--cores', type=int, default=os.cpu_count(), help="cores of the machine projected for (default: this one's)")
    ap.add_argument('--project-seeds', type=int, default=5, help='seeds of the projected reproduction (default 5)')
    ap.add_argument('--methods', default=None, help='time only the runs of these methods (comma-separated; the others print nan)')
    a = ap.parse_args(argv)
    os.environ['OMP_NUM_THREADS'] = '1'
    sys.path.insert(0, str(ROOT))
    from mer_nb.experiments import load_artefacts
    load_artefacts()                              # the artefact modules register every method they run (ESAAT, baselines)
    from mer_nb.recipe import get_preset
    from mer_nb.cv import make_folds
    p = get_preset(a.preset)
    seeds = [int(s) for s in a.seeds.split(',')]
    epochs = tuple(int(e) for e in a.epochs.split(','))
    rows = plan(p, seeds=range(a.project_seeds), data=a.data)
    dss = {f: _dataset(a.data, p, f) for f in {r['faces'] for r in rows}}
    first, uniq = {}, []
    for r in rows:
        r['key'] = _key(r, dss[r['faces']], p)
        if r.get('family'): r['shared'] = r['family']           # its record is written by its family's run
        elif (r['key'], r['seeds']) in first: r['shared'] = first[(r['key'], r['seeds'])]   # the same run, trained once
        else:
            first[(r['key'], r['seeds'])] = r['artefact']
            if all(u['key'] != r['key'] for u in uniq): uniq.append(r)    # timed once per run key (a seed costs the same)
    t0 = time.time()
    if a.runs:
        for r in uniq:
            n = len(make_folds(dss[r['faces']].subjects, r['protocol'], r['k']))
            sib = [_key({**r, 'method': m}, dss[r['faces']], p) for m in r.get('siblings', ())]
            r.update(from_records(r, [Path(a.runs)/k for k in (r['key'], *sib)], n) or dict(folds=n, seed_core_s=float('nan')))
        how = f'from the fold records in {a.runs}'
    else:
        with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(a.jobs, mp_context=mp.get_context('spawn')) as ex:
            order = sorted(uniq, key=lambda r: (not r['augment'], not r['method'].startswith('ESAAT')))   # the longest first
            if a.methods: order = [r for r in order if r['method'] in a.methods.split(',')]
            futs = {id(r): ex.submit(measure, r, a.data, a.preset, a.sample, seeds, epochs, tmp) for r in order}
            for r in uniq: r.update(futs[id(r)].result() if id(r) in futs else
                                 dict(folds=len(make_folds(dss[r['faces']].subjects, r['protocol'], r['k'])), seed_core_s=float('nan')))
        how = (f'timed: {a.sample} fold(s) per run x seeds {seeds}, at {epochs[0]} and {epochs[1]} epochs, extrapolated to '
               f'{p.epochs} and to all folds ({time.time() - t0:.0f} s)')
    print(f'# Cost of one seed, preset {p.name}, data {Path(a.data).name} ({how})\n')
    print(f'| artefact | run | method | run key | folds | core-s / fold | core-s / seed | parallel | shared with |')
    print('|---|---|---|---|---:|---:|---:|---:|---|')
    per_art, wall, alone, all_seeds = {}, 0.0, 0.0, 0.0
    cost = lambda r: next((x for x in uniq if x['key'] == r['key']), {}).get('seed_core_s', float('nan'))
    for r in rows:
        u = next((x for x in uniq if x['key'] == r['key']), None)
        shared, c = r.get('shared'), cost(r)
        par = max(1, min(r['workers'], a.cores))
        folds = u['folds'] if u else len(make_folds(dss[r['faces']].subjects, r['protocol'], r['k']))
        print(f"| {r['artefact']} | {r['row']} | {r['method']} | {r['key']} | {folds} | {'' if r.get('family') else f'{c / folds:.1f}'} | "
              f"{'(counted there)' if shared else f'{c:,.0f}'} | {par} | {shared or ''} |")
        if not shared:
            n = len(r['seeds'])          # the reproduction's seeds; Table 1's trained baselines: fewer; the noise floor's second set: others
            per_art[r['artefact']] = per_art.get(r['artefact'], 0.0) + c * n / a.project_seeds
            wall += c * n / par
            if r.get('max_seeds'): all_seeds += c * (a.project_seeds - n) / par
        if r.get('base'):     # each sibling run alone would train its own HTNet+LAPE again
            alone += len(r['siblings']) * cost(next(x for x in rows if x['row'] == r['base'])) * a.project_seeds / par
    print('\n| artefact | core-s / seed | core-h / seed |')
    print('|---|---:|---:|')
    from mer_nb.experiments import ARTEFACTS
    for art in ARTEFACTS:
        v = per_art.get(art, 0.0)
        print(f'| {art} | {v:,.0f} | {v / 3600:.2f} |' + (' (no training)' if art == 'fig1' else ''))
    tot = sum(per_art.values())
    print(f'| **all** | **{tot:,.0f}** | **{tot / 3600:.2f}** |')
    print(f'\nprojected wall time of `mer-nb reproduce --preset {p.name} --data {Path(a.data).name} '
          f'--seeds {",".join(map(str, range(a.project_seeds)))}` (all artefacts, training only) on {a.cores} core(s): '
          f'{wall:,.0f} s = {_fmt_h(wall)}')
    if alone:
        print(f'the same with every Table 5 ESAAT run training its own HTNet+LAPE (no siblings; its HTNet+LAPE row x the '
              f'siblings added): {wall + alone:,.0f} s = {_fmt_h(wall + alone)}; siblings: {(wall + alone) / wall:.2f}x')
    if all_seeds:
        print(f'the same with the trained baselines on all {a.project_seeds} seeds too (not the first '
              f'{min(r.get("max_seeds") or a.project_seeds for r in rows)}): {wall + alone + all_seeds:,.0f} s = '
              f'{_fmt_h(wall + alone + all_seeds)}; both: {(wall + alone + all_seeds) / wall:.2f}x')

if __name__ == '__main__':
    main()
