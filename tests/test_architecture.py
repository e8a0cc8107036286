"""The layering of the package: no import cycle between modules, notebooks in import order, nothing of the development checkout inside the package."""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / 'mer_nb'


def module_imports(path: Path) -> set:
    "mer_nb modules a module imports, anywhere in it (top level or inside functions)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.add(node.module.split('.')[0])
            elif node.level == 1: out.update(a.name for a in node.names)
            elif node.module and node.module.startswith('mer_nb.'): out.add(node.module.split('.')[1])
            elif node.module == 'mer_nb': out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split('.')[1] for a in node.names if a.name.startswith('mer_nb.'))
    return out


def find_cycle(graph: dict) -> list | None:
    "A cycle of the directed graph {node: set of nodes} as a list of nodes, or None."
    state, stack = {}, []
    def visit(n):
        state[n] = 1; stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1: return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)): return c
        state[n] = 2; stack.pop()
        return None
    for n in sorted(graph):
        if n not in state and (c := visit(n)): return c
    return None


def test_find_cycle_finds_one():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None


def test_no_import_cycle_between_modules():
    mods = {p.stem for p in PKG.glob('*.py')} - {'__init__', '_modidx'}
    graph = {m: (module_imports(PKG / f'{m}.py') & mods) - {m} for m in mods}
    assert find_cycle(graph) is None, f'import cycle: {" -> ".join(find_cycle(graph))}'
    assert 'foldpar' not in graph['train'] and 'train' not in graph['foldpar']     # both trainers read the recipe, neither the other
    assert 'recipe' in graph['train'] and 'recipe' in graph['foldpar']


def _notebook_code(nb: Path) -> str:
    cells = json.loads(nb.read_text())['cells']
    return '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'code')


def test_notebooks_import_only_earlier_ones():
    nbs = sorted(ROOT.glob('nbs/[0-9][0-9]_*.ipynb'))
    assert [int(p.name[:2]) for p in nbs] == list(range(len(nbs))), 'notebooks are numbered 00, 01, ... without gaps or repeats'
    module_of = {}
    for nb in nbs:
        m = re.search(r'#\|\s*default_exp\s+(\S+)', _notebook_code(nb))
        if m: module_of[m.group(1)] = nb
    for nb in nbs:
        code = _notebook_code(nb)
        used = set(re.findall(r'(?:from|import)\s+mer_nb\.(\w+)', code))
        later = sorted(u for u in used if u in module_of and module_of[u].name > nb.name)
        assert not later, f'{nb.name} imports {later}, defined in later notebooks {[module_of[u].name for u in later]}'


def test_package_names_no_development_path():
    for p in PKG.glob('*.py'):
        text = p.read_text()
        assert "'shared'" not in text and '../shared' not in text, f'{p.name} refers to the development checkout'
