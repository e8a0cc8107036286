"""The committed results: the README shows exactly what `results/` holds, and every artefact there is complete and checkable."""
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from mer_nb.cli import ARTEFACTS, main
from mer_nb.report import results_summary, update_readme

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'results'
ARTEFACT_DIRS = sorted(d for d in RESULTS.iterdir() if d.is_dir()) if RESULTS.is_dir() else []
NO_TRAINING = {'fig1'}      # Figure 1 counts the architecture: no predictions, no comparisons


def test_readme_shows_results():
    "Fails when README.md's results block is not `results_summary(results/)`: regenerate with `mer-nb results results --readme README.md`."
    assert update_readme(ROOT / 'README.md', RESULTS, list(ARTEFACTS), check=True), \
        'README.md does not show results/: run `mer-nb results results --readme README.md`'
    if RESULTS.is_dir(): assert main(['results', str(RESULTS), '--readme', str(ROOT / 'README.md'), '--check']) == 0


@pytest.mark.parametrize('adir', ARTEFACT_DIRS, ids=[d.name for d in ARTEFACT_DIRS])
def test_artefact_complete(adir):
    run = json.loads((adir / 'run.json').read_text())
    name = run['artefact']
    assert name == adir.name and name in ARTEFACTS
    assert run['training_code'] and run['git_revision'] and run['command'] and run['wall_seconds'][name] > 0
    assert len(run['seeds']) >= 5 and run['parameters']['data'], 'committed results: the composite at five seeds or more'
    for f in (f'{name}.md', f'{name}.csv', f'{ARTEFACTS[name]}.ipynb'):
        assert (adir / f).is_file(), f
    scores = pd.read_csv(adir / f'{name}.csv')
    if name in NO_TRAINING:
        assert 'training_core_seconds' not in run and not list(adir.glob('*predictions*')) and len(scores)
        return
    preds = pd.read_csv(adir / f'{name}_predictions.csv.gz')       # gzipped per-sample predictions of every row
    assert {'id', 'seed', 'subject', 'label', 'pred', 'selection'} <= set(preds.columns)
    assert preds.id.nunique() == 442 and preds.subject.nunique() == 68 and set(preds.seed) >= set(run['seeds'])
    c = pd.read_csv(adir / 'comparisons.csv')
    assert c.verdict.isin(['a better', 'b better', 'not resolved']).all()
    assert ((c.p_holm >= 0.05) == (c.verdict == 'not resolved')).all()
    assert not (adir / f'{name}_predictions.csv').exists()          # big files only gzipped
    assert sum(f.stat().st_size for f in adir.iterdir()) < 5_000_000


def test_summary_reads_only_results():
    s = results_summary(RESULTS, list(ARTEFACTS))
    for d in ARTEFACT_DIRS: assert f'results/{d.name}/' in s
