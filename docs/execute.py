"""Execute the library notebooks in place, so that they are committed with their outputs (figures included) and a
reader sees them on a code host and in the documentation site. Cells flagged `#| notest` run too: they draw the
figures on the real composite (found through $MER_NB_COMPOSITE, else ../shared beside the checkout).

    python docs/execute.py [nbs/NN_name.ipynb ...]     # default: every nbs/NN_*.ipynb; then `nbdev_clean`
"""
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('MPLBACKEND', 'Agg')
shared = ROOT.parent / 'shared' / 'data' / 'megc2019_composite'
if 'MER_NB_COMPOSITE' not in os.environ and (shared / 'labels.csv').is_file(): os.environ['MER_NB_COMPOSITE'] = str(shared)

from execnb.shell import CaptureShell  # noqa: E402


def execute(nb: Path) -> float:
    "Run every cell of `nb` from its own folder and write the outputs back into it; the seconds it took."
    t = time.time()
    cwd = os.getcwd()
    os.chdir(nb.parent)
    try: CaptureShell(nb.parent, mpl_format='png').execute(nb, nb, exc_stop=True)
    finally: os.chdir(cwd)
    return time.time() - t


if __name__ == '__main__':
    nbs = [Path(a).resolve() for a in sys.argv[1:]] or sorted((ROOT / 'nbs').glob('[0-9][0-9]_*.ipynb'))
    for nb in nbs: print(f'{nb.name}: {execute(nb):.0f} s', flush=True)
