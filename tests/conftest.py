"""Shared fixtures. Real-data tests read ../shared/data/megc2019_composite and skip, saying why, where it is absent."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # pytest-xdist runs one process per core: one torch thread each

# The development layout lives here, not in the package: the real composite at ../shared beside the checkout, unless
# $MER_NB_COMPOSITE names it. Exported as MER_NB_COMPOSITE so that mer_nb.data.find_composite() in the notebooks and
# in subprocesses (papermill kernels, `mer-nb` runs) finds the same folder.
SHARED_COMPOSITE = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'megc2019_composite'


def _find_composite():
    for c in (os.environ.get('MER_NB_COMPOSITE'), SHARED_COMPOSITE):
        if c and (Path(c) / 'labels.csv').is_file(): return Path(c)
    return None


COMPOSITE = _find_composite()
if COMPOSITE is not None: os.environ.setdefault('MER_NB_COMPOSITE', str(COMPOSITE))


@pytest.fixture(scope='session')
def composite_root():
    root = COMPOSITE
    if root is None:
        pytest.skip('real MEGC2019 composite not found: expected ../shared/data/megc2019_composite beside the checkout '
                    '(or MER_NB_COMPOSITE=path)')
    return root


@pytest.fixture
def toy_dataset():
    """48 samples, 6 subjects with every class, classes separable by the mean of the flow image."""
    from mer_nb.data import MERDataset
    rng = np.random.default_rng(0)
    n = 48
    lab = np.tile([0, 1, 2], n // 3)
    flows = np.clip(0.5 + 0.15 * (lab[:, None, None, None] - 1) + 0.05 * rng.standard_normal((n, 3, 28, 28)), 0, 1)
    return MERDataset(ids=[f't{i}' for i in range(n)], datasets=np.where(np.arange(n) < 24, 'a', 'b'),
                      subjects=np.arange(n) // 8, labels=lab, flows=flows, name='toy')
