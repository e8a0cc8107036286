"""The course: a learning path declared once (the landing page's table, which the site's navigation follows), chapters
that open with why and a figure and end with questions whose answers are folded away, short code cells, and enough
figures made by the notebooks' own code."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
LIBRARY = sorted(NBS.glob('[0-9][0-9]_*.ipynb'))


def _build():
    spec = importlib.util.spec_from_file_location('docs_build', ROOT / 'docs/build.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cells(nb: Path) -> list:
    return json.loads(nb.read_text())['cells']


def has_figure(c: dict) -> bool:
    return c['cell_type'] == 'code' and any('image/png' in o.get('data', {}) for o in c.get('outputs', []))


COURSE = _build().course(NBS)


def test_learning_path_in_the_order_a_student_needs():
    order = [n.split('_', 1)[1].removesuffix('.ipynb') for n in COURSE]
    # micro-expressions and how they are measured -> data, protocols -> faces, flow -> HTNet -> training and folds
    # -> metrics -> ESAAT -> diffusion -> what the tables found
    want = ['synthetic', 'data', 'faces', 'flow', 'htnet', 'train', 'cv', 'metrics', 'agent', 'esaat', 'diffusion']
    assert order[:len(want)] == want, order
    assert {'table1', 'noise', 'ablations', 'augment'} <= set(order[len(want):]), order
    text = ''.join(''.join(c['source']) for c in cells(NBS / 'index.ipynb'))
    assert '09_htnet.ipynb#lape' in text                     # LAPE has its place in the path, between metrics and ESAAT
    reference = {'00_core', '12_foldpar', '13_store', '18_report', '25_cli'}
    assert not reference & {n.removesuffix('.ipynb') for n in COURSE}


@pytest.mark.parametrize('name', list(COURSE))
def test_chapter_opens_with_why_and_a_figure_and_ends_with_questions(name):
    cs = cells(NBS / name)
    assert cs[0]['cell_type'] == 'markdown' and cs[1]['cell_type'] == 'markdown', name
    assert has_figure(cs[2]), f'{name}: the chapter does not open with a figure (its third cell)'
    last = ''.join(cs[-1]['source'])
    assert last.startswith('## Questions') and last.count('<details>') >= 1 and '<summary>Answer</summary>' in last, name


def test_code_cells_are_short():
    longest = {nb.name: max((len(''.join(c['source']).splitlines()) for c in cells(nb) if c['cell_type'] == 'code'), default=0)
               for nb in LIBRARY}
    assert max(longest.values()) <= 80, {k: v for k, v in longest.items() if v > 80}
    for n in COURSE:                                         # a chapter reads in short steps: its median code cell is small
        lengths = sorted(len(''.join(c['source']).splitlines()) for c in cells(NBS / n) if c['cell_type'] == 'code')
        assert lengths[len(lengths) // 2] <= 20, (n, lengths)


def test_figures_across_the_library():
    figs = {nb.name: sum(has_figure(c) for c in cells(nb)) for nb in LIBRARY}
    assert sum(figs.values()) >= 20 and sum(v > 0 for v in figs.values()) >= 14, figs
