"""The `paper` preset end to end on the CPU, on a tiny slice, through the real code path (`reproduce` -> papermill ->
`Experiment` -> `run_cv`): the paper's model, widths and optimiser, only the data, epochs and batches cut down by preset
overrides, so that the configuration meant for a GPU cannot rot unseen. And the `published` input recipe: what it
changes (HTNet's inputs, the batch order, the landmarks, the run key) and what it leaves alone (everything else)."""
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from mer_nb.cli import ARTEFACTS, reproduce
from mer_nb.store import run_key
from mer_nb.data import model_input
from mer_nb.experiments import Experiment
from mer_nb.htnet import PAPER_CONFIG
from mer_nb.recipe import RECIPES, get_preset, method_inputs, shuffles
from mer_nb.synthetic import make_synthetic

# 2 subjects (2 LOSO folds, 2 K-fold folds; 24 training samples each, the fewest ESAAT's transfer-entropy estimate
# takes), 1 epoch of 3 batches, a 2-step DDPM that does generate (ratio 2)
TINY = dict(epochs=1, batch_size=8, synthetic=dict(n_subjects=2, per_class=8), n_boot=20,
            diffusion=dict(train_steps=2, sample_steps=2, batch_size=8, warmup=1, ratio=2.0))


def test_paper_preset_end_to_end(tmp_path, capsys):
    out = reproduce('paper', out=tmp_path, device='cpu', overrides=TINY, log_output=False)
    said = capsys.readouterr().out
    made = [name for name, a in ARTEFACTS.items() if a.in_all]     # the extras (tune) only when named
    n = len(made)
    assert n < len(ARTEFACTS) and f'artefact 1 of {n}' in said and f'artefact {n} of {n}' in said, said
    assert 'estimate: preset paper: HTNet 428.6 MFLOP/sample x 48 samples x 1 epochs x 2 folds' in said, said
    assert 'TFLOP/s' in said
    index = (out/'index.md').read_text()
    assert not (out/'tune').exists()
    for name in made:
        run = json.loads((out/name/'run.json').read_text())
        assert run['preset']['name'] == 'paper' and run['preset']['epochs'] == 1 and run['device'] == 'cpu'
        assert run['preset']['model'] == json.loads(json.dumps(PAPER_CONFIG)) and run['preset']['lr'] == 5e-5
        assert run['parameters']['overrides']['batch_size'] == 8
        assert (out/name/f'{name}.md').is_file() and f'{name}/{name}.md' in index and f'{name}/run.json' in index
    recs = sorted((out/'runs').rglob('*.npz'))
    assert recs
    for r in recs:
        with np.load(r) as z: assert z['test_logits'].shape[0] == 1 and np.isfinite(z['test_logits']).all()   # one epoch, finite
    t1 = (out/'table1'/'table1.csv').read_text()
    assert 'HTNet' in t1 and 'MobileViT' in t1
    assert 'preset `paper` (1 epochs, lr 5e-05, batch 8)' in (out/'table1'/'table1.md').read_text()


def test_published_recipe_changes_exactly_its_fields():
    ours, pub = get_preset('paper'), get_preset('paper', recipe='published')
    assert {k for k, v in asdict(ours).items() if asdict(pub)[k] != v} == {'recipe'}
    ds = make_synthetic(n_subjects=2, per_class=2)
    # HTNet's input: the same crops with x as the row, channels reversed (BGR: strain, v, u), values x 255
    x_o, x_p = method_inputs('HTNet', ds, ours), method_inputs('HTNet', ds, pub)
    assert np.array_equal(x_o, model_input(ds))
    assert np.array_equal(x_p, model_input(ds, row_is_x=True)[:, ::-1] * np.float32(255))
    assert x_p.max() > 1.5 and not np.array_equal(x_p / 255, x_o)
    for m in ('STSTNet', 'OFF-ApexNet', 'LBP-TOP'):      # a baseline keeps its own input
        ds_m = make_synthetic(n_subjects=2, per_class=2, faces=True) if m == 'LBP-TOP' else ds
        assert np.array_equal(method_inputs(m, ds_m, pub), method_inputs(m, ds_m, ours))
    assert shuffles(ours) and not shuffles(pub)
    assert RECIPES['ours']['landmarks'] is None and RECIPES['published']['landmarks'] == 'mtcnn'
    # the run key: the recipe enters it; our recipe adds nothing to the key (which carries the training code, `store.training_code`)
    k_o, k_p = (run_key(ds, p, 'loso', 5, 'full') for p in (ours, pub))
    assert k_o != k_p
    import hashlib
    from mer_nb.store import _fingerprint, training_code
    old = dict(method='HTNet', preset={f: v for f, v in asdict(ours).items() if f not in ('workers', 'n_boot', 'synthetic', 'name', 'diffusion', 'recipe', 'precision')},
               model_kw={}, protocol='loso', k=None, regime='full', data=_fingerprint(ds), code=training_code())
    from mer_nb.core import default_device, training_isa
    if (isa := training_isa(default_device())) is not None: old['isa'] = isa      # the instruction set of CPU training
    assert k_o == hashlib.sha1(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:12]


def test_published_recipe_end_to_end(tmp_path, capsys):
    "Table 1's HTNet under the published recipe, through reproduce: MTCNN landmarks, 0-255 BGR crops, no shuffling, own run key."
    out = reproduce('paper', only='table1', out=tmp_path, device='cpu', overrides={**TINY, 'recipe': 'published'},
                    extra={'methods': ['HTNet']}, log_output=False)
    said = capsys.readouterr().out
    assert 'artefact 1 of 1' in said
    md = (out/'table1'/'table1.md').read_text()
    assert 'input recipe `published`' in md and 'detected landmarks' in md          # the synthetic faces' MTCNN landmarks
    assert 'MTCNN found landmarks' in (out/'table1'/'table1_sota.ipynb').read_text()
    exp = Experiment.create('paper', None, tmp_path/'x', overrides={**TINY, 'recipe': 'published'}, runs=out/'runs')
    ds = exp.dataset()
    assert ds.landmarks is not None
    recs = sorted((out/'runs'/run_key(ds, exp.preset, 'loso', 5, 'full')).rglob('*.npz'))
    assert len(recs) == 2                                    # 2 subjects: 2 LOSO folds, under the published recipe's key
    with pytest.raises(Exception, match='our input recipe only'):
        reproduce('paper', only='table3', out=tmp_path, overrides={**TINY, 'recipe': 'published'}, log_output=False)
