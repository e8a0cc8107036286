"""Scale-out: folds shared out among `torchrun` processes through the common run folder."""
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd

import mer_nb.recipe as R
import mer_nb.cv as CV
from mer_nb.core import MerError

SCRIPT = textwrap.dedent('''
    import sys, numpy as np, torch
    torch.set_num_threads(1)
    import mer_nb.recipe as R
    import mer_nb.cv as CV
    from mer_nb.core import MerError
    from mer_nb.data import MERDataset
    rng = np.random.default_rng(0)
    n = 48
    lab = np.tile([0, 1, 2], n // 3)
    flows = np.clip(0.5 + 0.15 * (lab[:, None, None, None] - 1) + 0.05 * rng.standard_normal((n, 3, 28, 28)), 0, 1)
    ds = MERDataset(ids=[f't{i}' for i in range(n)], datasets=np.where(np.arange(n) < 24, 'a', 'b'),
                    subjects=np.arange(n) // 8, labels=lab, flows=flows, name='toy')
    rank, world = CV.shard()
    preds = CV.run_cv(ds, R.get_preset('smoke', epochs=6, lr=3e-3), sys.argv[1], workers=1, progress=False, device='cpu')
    preds.to_csv(f'{sys.argv[2]}/rank{rank}.csv', index=False)
''')


def test_torchrun_two_processes_share_the_folds(toy_dataset, tmp_path):
    script = tmp_path / 'run.py'
    script.write_text(SCRIPT)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script),
                        str(tmp_path / 'runs'), str(tmp_path)], capture_output=True, text=True, timeout=600,
                       env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = {}
    for p in (tmp_path / 'runs').rglob('*.npz'):
        with np.load(p) as rec: ranks[p.stem] = int(rec['rank'])
    assert len(ranks) == 6 and sorted(ranks.values()) == [0, 0, 0, 1, 1, 1]   # each fold trained once, 3 per rank
    p0, p1 = pd.read_csv(tmp_path / 'rank0.csv'), pd.read_csv(tmp_path / 'rank1.csv')
    pd.testing.assert_frame_equal(p0, p1)                                      # both ranks return every fold
    single = CV.run_cv(toy_dataset, R.get_preset('smoke', epochs=6, lr=3e-3), tmp_path / 'single', workers=1, progress=False)
    pd.testing.assert_frame_equal(p0, single.astype(p0.dtypes.to_dict()), check_exact=False)   # the same as one process


def test_shard_rejects_bad_environment(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '2'); monkeypatch.setenv('RANK', '2')
    try:
        CV.shard()
    except MerError as e:
        assert 'RANK=2 is not in 0..WORLD_SIZE-1' in str(e)
    else:
        raise AssertionError('no error')
