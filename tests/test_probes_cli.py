"""Probe suite (issue 18, item 8): bad input to every `mer-nb` subcommand, as a careless or hostile user would give it.

Each probe runs the command in a dedicated root (its own cwd, cache and files), and asserts the exit status, exactly
one stderr line `mer-nb: error: ...` (or `mer-nb: warning: ...`) naming the option, file or row, no traceback, and
that nothing was created or changed in the root outside the paths the probe allows (the output folder of a run that
reached a notebook keeps `<artefact>.failed.ipynb` there, and nothing else). Most probes call `main()` in this
process (fast); `test_probe_through_the_console_entry` runs a few through `python -m mer_nb`."""
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mer_nb.cli import main
from mer_nb.htnet import HTNet
from mer_nb.predict import save_weights
from mer_nb.sources import write_synthetic_casme3
from mer_nb.synthetic import synthetic_frames
from mer_nb.recipe import get_preset


def _snapshot(root: Path) -> dict:
    "{path: (size, mtime)} of every file and folder under root (a folder's mtime left out: a write check touches it)."
    return {str(p.relative_to(root)): (0, 0) if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob('*')}


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    "Frames, a valid weights file (an untrained smoke HTNet) and bad files; read-only for the probes (snapshot checks)."
    d = tmp_path_factory.mktemp('assets')
    fr = synthetic_frames(n_subjects=1, per_class=1, seed=11)
    cv2.imwrite(str(d / 'onset.png'), fr['onset'][2]); cv2.imwrite(str(d / 'apex.png'), fr['apex'][2])
    cv2.imwrite(str(d / 'small.png'), fr['apex'][2][:64, :64])
    (d / 'garbage.png').write_bytes(b'\x89PNG not an image')
    torch.manual_seed(0)
    kw = dict(get_preset('smoke').model)
    cfg = dict(method='HTNet', model={k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}, preset='smoke',
               pipeline=dict(method='farneback', crop=False, size=28))
    w = save_weights(d / 'w.pt', HTNet(**kw), cfg)
    raw = w.read_bytes()
    (d / 'truncated.pt').write_bytes(raw[:len(raw) // 2])
    state = torch.load(w, weights_only=True)['state_dict']
    torch.save({'state_dict': state, 'config': {**cfg, 'model': {**cfg['model'], 'dim': 32}}}, d / 'wrong_config.pt')
    torch.save({'state_dict': state, 'config': 'HTNet'}, d / 'config_not_a_mapping.pt')

    class Payload:
        def __reduce__(self): return (exec, ("import os; open(os.environ['MER_NB_PROBE_MARK'], 'w').write('ran')",))
    torch.save({'state_dict': state, 'config': Payload()}, d / 'pickled_payload.pt')
    write_synthetic_casme3(d / 'casme3', n_subjects=2, per_class=1)                   # frames for `train --data` (flows cached)
    (d / 'broken').mkdir()
    (d / 'broken' / 'labels.csv').write_text('sub,filename_o,label\n1,x.png,9\n')      # columns missing: fails in the notebook
    return d


def _run(root, monkeypatch, capsys, args, env=None):
    "main(args) with cwd root/work and caches under root: (exit status, stdout, stderr lines, seconds)."
    (root / 'work').mkdir(exist_ok=True)
    monkeypatch.chdir(root / 'work')
    monkeypatch.setenv('MER_NB_CACHE', str(root / 'cache'))
    monkeypatch.setenv('MER_NB_PROBE_MARK', str(root / 'MARK'))
    for k in ('MER_NB_WEIGHTS', 'MER_NB_DEBUG', 'MER_NB_FOLD_BATCH', 'RANK', 'WORLD_SIZE'): monkeypatch.delenv(k, raising=False)
    for k, v in (env or {}).items(): monkeypatch.setenv(k, v)
    capsys.readouterr()
    t0 = time.time()
    try: rc = main(args)
    except SystemExit as e: rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err.splitlines(), time.time() - t0


A = '{assets}'     # replaced by the assets folder
R = '{root}'       # replaced by the probe's root folder (tmp_path)
FILE = f'{R}/a_file'  # a regular file the probe root holds: nothing can be created beneath it, not even by root
PREDICT = ['predict', '--onset', f'{A}/onset.png', '--apex', f'{A}/apex.png']

# (id, argv, env, exit status, text the one stderr line must contain, paths under the root that may appear)
PROBES = [
    # outputs that cannot be written: refused before any work
    ('out-beneath-a-file', ['reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', f'{FILE}/out'], {}, 2, f'--out {FILE}/out: {FILE} is not a folder', []),
    ('out-is-a-file', ['reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', FILE], {}, 2, f'--out {FILE}: not a folder', []),
    ('out-in-proc', ['reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', '/proc/mer-nb-probe/out'], {}, 2, '--out /proc/mer-nb-probe/out: cannot write in /proc', []),
    ('artefact-folder-is-a-file', ['reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', f'{R}/out2'], {}, 2, f'--out {R}/out2/fig1: not a folder', []),
    ('save-beneath-a-file', ['train', '--preset', 'smoke', '--save', f'{FILE}/w.pt'], {}, 2, f'--save {FILE}/w.pt: {FILE} is not a folder', []),
    ('save-is-a-folder', ['train', '--preset', 'smoke', '--save', f'{R}/work'], {}, 2, f'--save {R}/work: is a folder, not a file', []),
    ('saliency-beneath-a-file', [*PREDICT, '--weights', f'{A}/w.pt', '--saliency', f'{FILE}/s.png'], {}, 2, f'--saliency {FILE}/s.png: {FILE} is not a folder', []),
    # numeric options and names
    ('seeds-not-numbers', ['reproduce', '--seeds', 'a,b', '--out', f'{R}/out'], {}, 2, "--seeds a,b: 'a' is not a seed", []),
    ('seeds-negative', ['reproduce', '--seeds', '0,-1', '--out', f'{R}/out'], {}, 2, "--seeds 0,-1: '-1' is not a seed", []),
    ('seeds-repeated', ['reproduce', '--seeds', '1,1', '--out', f'{R}/out'], {}, 2, '--seeds 1,1: a seed is repeated', []),
    ('workers-negative', ['reproduce', '--workers', '-3', '--out', f'{R}/out'], {}, 2, "argument --workers: '-3' is not an integer >= 1", []),
    ('workers-zero', ['reproduce', '--workers', '0', '--out', f'{R}/out'], {}, 2, "argument --workers: '0' is not an integer >= 1", []),
    ('workers-not-a-number', ['reproduce', '--workers', 'many', '--out', f'{R}/out'], {}, 2, "argument --workers: 'many' is not an integer >= 1", []),
    ('train-seed-negative', ['train', '--seed', '-1', '--save', f'{R}/w.pt'], {}, 2, "argument --seed: '-1' is not an integer >= 0", []),
    ('unknown-preset', ['reproduce', '--preset', 'huge', '--out', f'{R}/out'], {}, 2, "argument --preset: invalid choice: 'huge'", []),
    ('unknown-artefact', ['reproduce', '--only', 'table9', '--out', f'{R}/out'], {}, 2, '--only: unknown artefact(s) table9', []),
    ('no-subcommand', [], {}, 2, 'the following arguments are required', []),
    ('bad-rank', ['reproduce', '--preset', 'smoke', '--only', 'fig1', '--out', f'{R}/out'], {'RANK': 'x', 'WORLD_SIZE': '2'}, 2, "RANK='x'", []),
    # data
    ('missing-data-folder', ['reproduce', '--preset', 'smoke', '--only', 'table1', '--data', f'{R}/nope', '--out', f'{R}/out'], {}, 2, f'--data {R}/nope: no such folder', []),
    ('train-missing-data', ['train', '--data', f'{R}/nope', '--save', f'{R}/w.pt'], {}, 2, f'--data {R}/nope: no such file or folder', []),
    ('unwritable-flow-cache', ['train', '--preset', 'smoke', '--data', f'{A}/casme3', '--save', f'{R}/w.pt'], {'MER_NB_CACHE': f'{FILE}/cache'}, 2,
     f'{FILE}/cache/clips', []),
    # errors raised inside the experiment notebook: one line, the executed notebook kept beside the artefact folder
    ('broken-labels-csv', ['reproduce', '--preset', 'smoke', '--only', 'table1', '--data', f'{A}/broken', '--out', f'{R}/out'], {}, 2,
     'table1 (table1_sota.ipynb): MerError: ', ['out', 'out/table1.failed.ipynb']),
    ('bad-fold-batch', ['reproduce', '--preset', 'smoke', '--only', 'table1', '--out', f'{R}/out'], {'MER_NB_FOLD_BATCH': 'lots'}, 2,
     "table1 (table1_sota.ipynb): MerError: fold_batch must be a positive integer or 'auto', not 'lots'", ['out', 'out/table1.failed.ipynb']),
    # weights files
    ('weights-missing', [*PREDICT, '--weights', f'{R}/none.pt'], {}, 2, f'{R}/none.pt: no such weights file', []),
    ('weights-not-given', PREDICT, {}, 2, 'no weights: pass --weights', []),
    ('weights-truncated', [*PREDICT, '--weights', f'{A}/truncated.pt'], {}, 2, f'{A}/truncated.pt: not a mer_nb weights file', []),
    ('weights-wrong-config', [*PREDICT, '--weights', f'{A}/wrong_config.pt'], {}, 2, f'{A}/wrong_config.pt: its config and weights do not make an HTNet', []),
    ('weights-config-not-a-mapping', [*PREDICT, '--weights', f'{A}/config_not_a_mapping.pt'], {}, 2, f'{A}/config_not_a_mapping.pt: config is a str', []),
    ('weights-pickled-payload', [*PREDICT, '--weights', f'{A}/pickled_payload.pt'], {}, 2, 'holds pickled code', []),
    # frames
    ('onset-missing', ['predict', '--onset', f'{R}/none.png', '--apex', f'{A}/apex.png', '--weights', f'{A}/w.pt'], {}, 2, f'--onset: missing frame {R}/none.png', []),
    ('apex-unreadable', ['predict', '--onset', f'{A}/onset.png', '--apex', f'{A}/garbage.png', '--weights', f'{A}/w.pt'], {}, 2, f'--apex: unreadable frame {A}/garbage.png', []),
    ('frames-of-two-sizes', ['predict', '--onset', f'{A}/onset.png', '--apex', f'{A}/small.png', '--weights', f'{A}/w.pt'], {}, 2, 'onset is 112x112 but apex is 64x64', []),
    # empty of signal: classified, and flagged in one line
    ('identical-frames', ['predict', '--onset', f'{A}/onset.png', '--apex', f'{A}/onset.png', '--weights', f'{A}/w.pt'], {}, 0,
     'mer-nb: warning: onset and apex show no motion', []),
]


NOISY = {'broken-labels-csv', 'bad-fold-batch', 'unwritable-flow-cache'}    # work had started: other output precedes the line


@pytest.mark.parametrize('name, argv, env, status, says, allowed', PROBES, ids=[p[0] for p in PROBES])
def test_probe(name, argv, env, status, says, allowed, assets, tmp_path, monkeypatch, capsys):
    root = tmp_path
    (root / 'a_file').write_text('not a folder\n')
    (root / 'out2').mkdir(); (root / 'out2' / 'fig1').write_text('a file where the artefact folder would go\n')
    fill = lambda s: s.replace(A, str(assets)).replace(R, str(root))
    argv = [fill(a) for a in argv]
    before, assets_before = _snapshot(root), _snapshot(assets)
    rc, out, err, secs = _run(root, monkeypatch, capsys, argv, {k: fill(v) for k, v in env.items()})
    assert rc == status, (rc, err)
    tagged = [l for l in err if l.startswith('mer-nb: ')]
    assert len(tagged) == 1 and fill(says) in tagged[0], err
    assert tagged[0].startswith('mer-nb: warning: ' if status == 0 else 'mer-nb: error: ')
    assert not any('Traceback' in l for l in err), err
    if name in NOISY: assert err[-1] == tagged[0], err        # the notebook's (or a progress bar's) output may precede
    else: assert err == tagged, err
    assert not (root / 'MARK').exists(), 'pickled code ran'
    after = _snapshot(root)
    changed = {p for p in after if before.get(p) != after[p] and not p.startswith(('cache', 'work'))}
    changed |= {p for p in after if p.startswith('work') and p != 'work'}
    assert changed <= set(allowed), changed - set(allowed)
    assert _snapshot(assets) == assets_before
    if status == 2 and name.startswith(('save-', 'saliency-', 'out-')): assert secs < 15 and '[mer-nb] training' not in out   # before any work


def test_probe_through_the_console_entry(assets, tmp_path):
    "The same one line through `python -m mer_nb` as a separate process, for a usage error, a check and a notebook error."
    env = {**os.environ, 'MER_NB_CACHE': str(tmp_path / 'cache')}
    env.pop('MER_NB_DEBUG', None)
    cases = [(['reproduce', '--workers', '-3'], "mer-nb: error: argument --workers: '-3' is not an integer >= 1"),
             (['reproduce', '--seeds', 'a,b', '--out', str(tmp_path / 'out')], "mer-nb: error: --seeds a,b: 'a' is not a seed"),
             (['predict', '--onset', str(assets / 'onset.png'), '--apex', str(assets / 'apex.png'), '--weights', str(assets / 'truncated.pt')],
              f'mer-nb: error: {assets}/truncated.pt: not a mer_nb weights file')]
    for argv, line in cases:
        r = subprocess.run([sys.executable, '-m', 'mer_nb', *argv], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert r.returncode == 2 and r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith(line), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_probe_count():
    "The closing note counts the probes: keep this number in step with PROBES."
    assert len(PROBES) == 33
    assert sum(p[3] == 2 for p in PROBES) == 32 and sum(p[3] == 0 for p in PROBES) == 1
