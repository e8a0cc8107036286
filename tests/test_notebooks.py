"""Every library notebook runs top to bottom (cells flagged `#| notest` skipped): its in-place tests are part of the suite."""
from pathlib import Path

import pytest
from nbdev import test as nbdev_test  # imported as a module: pytest would collect a bare `test_nb`

NBS = sorted((Path(__file__).resolve().parents[1] / 'nbs').glob('[0-9]*.ipynb'))


def test_found_notebooks():
    assert len(NBS) >= 7, NBS


@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    ok, secs = nbdev_test.test_nb(nb, skip_flags=['notest'])
    assert ok, f'{nb.name} failed (see the traceback above)'
