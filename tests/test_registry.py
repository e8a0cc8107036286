"""The artefact registry: an artefact declared once, in a file of its own, runs through `reproduce` and the cost plan
with nothing else edited; every built-in artefact is declared there with its notebook, title and protocol."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from mer_nb.cli import main, notebook_of
from mer_nb.experiments import ARTEFACTS, load_artefacts

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT/'tests'/'data'/'toy_artefact.py'


def test_builtin_artefacts_declared_once():
    """In a fresh process (a notebook run in this one may re-register an artefact from its own cells): every built-in
    artefact, in reproduce's order, with a title, its notebook and the package module that declares it."""
    import subprocess
    code = ('import json; from pathlib import Path; from mer_nb.cli import ARTEFACTS, notebook_of\n'
            'print(json.dumps({n: [a.title, notebook_of(n).is_file(), a.arms is None, a.source] for n, a in ARTEFACTS.items()}))')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    arts = json.loads(r.stdout.strip().splitlines()[-1])
    assert list(arts) == ['table1', 'noise', 'table4', 'table5', 'fig1', 'table2', 'table3', 'tune'], r.stderr
    for name, (title, has_notebook, no_arms, source) in arts.items():
        assert title and has_notebook, name
        assert no_arms == (name == 'fig1'), name            # every table trains; the figure counts
        assert source.endswith('.py') and Path(source).parent.name == 'mer_nb', (name, source)


def test_toy_artefact_through_reproduce(tmp_path):
    out = tmp_path/'out'
    rc = main(['reproduce', '--preset', 'smoke', '--seeds', '0,1', '--artefacts', str(TOY), '--only', 'toy', '--out', str(out)])
    assert rc in (0, None)
    adir = out/'toy'
    names = {p.name for p in adir.iterdir()}
    assert {'toy.md', 'toy.csv', 'toy_predictions.csv', 'comparisons.csv', 'run.json', 'artefact.ipynb'} <= names, names
    scores = pd.read_csv(adir/'toy.csv')
    assert set(scores.method) == {'HTNet', 'HTNet+LAPE'} and set(scores.run) == {'ours', 'seed ensemble'}
    c = pd.read_csv(adir/'comparisons.csv')
    assert c.comparison.iloc[0] == 'HTNet+LAPE vs HTNet' and 'p_holm' in c
    md = (adir/'toy.md').read_text()
    assert md.startswith('# A toy table') and 'a toy: not in the paper.' in md
    run = json.loads((adir/'run.json').read_text())
    assert run['artefact'] == 'toy' and run['parameters']['artefact'] == 'toy' and run['fold_records'] > 0


def test_cost_plan_reads_the_registry():
    sys.path.insert(0, str(ROOT/'bench'))
    from cost import plan
    from mer_nb.recipe import get_preset
    load_artefacts(str(TOY))
    rows = plan(get_preset('smoke'), seeds=range(2), artefacts=str(TOY))
    arts = {r['artefact'] for r in rows}
    assert {'table1', 'noise', 'table4', 'table5', 'table2', 'table3', 'toy'} <= arts and 'fig1' not in arts
    noise = [r for r in rows if r['artefact'] == 'noise']
    assert [r['seeds'] for r in noise] == [(0, 1), (2, 3)]               # the second seed set is a run of its own
    fam = [r for r in rows if r['artefact'] == 'table5' and r.get('siblings')]
    assert fam and all(r['base'].startswith('HTNet+LAPE') for r in fam)
