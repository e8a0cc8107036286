"""`mer-nb train` and `mer-nb predict` end to end on drawn clips, with weights trained in the test (smoke preset)."""
import cv2
import numpy as np
import torch

from mer_nb.cli import main
from mer_nb.core import CLASSES
from mer_nb.synthetic import synthetic_frames


def test_train_then_predict_a_clip(tmp_path, capsys):
    w = tmp_path / 'htnet.pt'
    assert main(['train', '--data', 'synthetic', '--preset', 'smoke', '--save', str(w)]) == 0
    ck = torch.load(w, weights_only=True)
    assert set(ck) == {'state_dict', 'config'} and ck['config']['preset'] == 'smoke' and ck['config']['n_samples'] == 36
    assert ck['config']['pipeline'] == {'method': 'farneback', 'crop': False, 'size': 28}
    fr = synthetic_frames(n_subjects=1, per_class=1, seed=11)     # a subject the model never saw
    on, ap = tmp_path / 'onset.png', tmp_path / 'apex.png'
    cv2.imwrite(str(on), fr['onset'][2]); cv2.imwrite(str(ap), fr['apex'][2])
    capsys.readouterr()
    sal = tmp_path / 'saliency.png'
    assert main(['predict', '--onset', str(on), '--apex', str(ap), '--weights', str(w), '--saliency', str(sal)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(': ')[1] in CLASSES
    probs = [float(t) for t in out[1].split(': ', 1)[1].split()[1::2]]
    assert len(probs) == 3 and abs(sum(probs) - 1) < 2e-3 and CLASSES[int(np.argmax(probs))] == out[0].split(': ')[1]
    assert out[3].startswith('regions (drop of p(') and out[-1] == f'saliency image: {sal}'
    img = cv2.imread(str(sal))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 800
    assert main(['predict', '--onset', str(on), '--apex', str(tmp_path / 'missing.png'), '--weights', str(w)]) == 2


# --- weights files that ask for more than they hold, or for a pipeline that cannot run --------------------------------
import json
import subprocess
import sys

import pytest

from mer_nb.htnet import HTNet
from mer_nb.predict import _plain, save_weights
from mer_nb.recipe import get_preset

PIPELINE = {'method': 'farneback', 'crop': False, 'size': 28}


def smoke_weights(path, model=None, pipeline=None, **config):
    "An (untrained) smoke-preset HTNet saved as `mer-nb train` saves it; `model` / `pipeline` / `config`: fields changed in its config."
    spec = get_preset('smoke').model
    cfg = _plain(dict(method='HTNet', model={**spec, **(model or {})}, preset='smoke', classes=list(CLASSES),
                      pipeline={**PIPELINE, **(pipeline or {})}, **config))
    torch.manual_seed(0)
    return save_weights(path, HTNet(**spec), cfg)


@pytest.fixture(scope='module')
def frames(tmp_path_factory):
    d = tmp_path_factory.mktemp('frames')
    fr = synthetic_frames(n_subjects=1, per_class=1, seed=11)
    cv2.imwrite(str(d / 'onset.png'), fr['onset'][2]); cv2.imwrite(str(d / 'apex.png'), fr['apex'][2])
    return d / 'onset.png', d / 'apex.png'


# `mer-nb predict` in a child whose address space is capped at what it holds after its imports + 2 GiB (a model of
# dim 2048 asks for 36 GB: built first, it fails there, not with the one line), then its exit status and peak RSS.
CHILD = r'''
import json, os, resource, sys
from mer_nb.cli import main
vsz = int(open('/proc/self/statm').read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
resource.setrlimit(resource.RLIMIT_AS, (vsz + 2 * 2**30, resource.RLIM_INFINITY))
try: rc = main(sys.argv[1:])
except BaseException as e: rc = f'{type(e).__name__}: {e}'
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))   # this process's own peak: ru_maxrss
print(json.dumps({'rc': rc, 'maxrss_kib': hwm}))                                          # keeps a forking parent's across exec
'''


def predict_child(frames, weights) -> tuple[list[str], dict]:
    on, ap = frames
    r = subprocess.run([sys.executable, '-c', CHILD, 'predict', '--onset', str(on), '--apex', str(ap), '--weights', str(weights)],
                       capture_output=True, text=True, timeout=600)
    return [l for l in r.stderr.splitlines() if l.startswith('mer-nb')], json.loads(r.stdout.splitlines()[-1])


def test_a_config_asking_for_dim_2048_is_refused_before_any_model_is_built(tmp_path, frames):
    w = smoke_weights(tmp_path / 'big.pt', model={'dim': 2048})          # dim-16 tensors, a config for 8.9e9 parameters
    err, child = predict_child(frames, w)
    assert err == [f'mer-nb: error: {w}: its config and weights do not make an HTNet (the config makes to_patch_embedding.weight '
                   '[2048, 147, 1, 1], the weights hold [16, 147, 1, 1])'], (err, child)
    assert child['rc'] == 2 and child['maxrss_kib'] < 1_500_000, child


def test_the_sound_weights_predict_in_the_capped_child(tmp_path, frames):
    "The control: the same child, the same cap, weights whose config matches."
    err, child = predict_child(frames, smoke_weights(tmp_path / 'ok.pt'))
    assert err == [] and child['rc'] == 0, (err, child)


@pytest.mark.parametrize('model,pipeline,said', [
    (None, {'method': 'magic'}, "config pipeline: unknown flow method 'magic' (expected one of farneback, tvl1)"),
    (None, {'landmarks': 'mtcnn'}, 'config pipeline: unknown field(s) landmarks (known: method, crop, size, row_is_x)'),
    (None, {'size': 100000}, "config pipeline: size 100000 is not the model's image_size 28"),
    (None, {'size': -3}, "config pipeline: size -3 is not the model's image_size 28"),
    (None, {'size': '28'}, "config pipeline: size '28' is not the model's image_size 28"),
    (None, {'crop': 'no'}, "config pipeline: crop 'no' is not true or false"),
    ({'image_size': 100000}, None, 'config model: image_size 100000 is not a whole number from 1 to 65536'),
    ({'image_size': 0}, None, 'config model: image_size 0 is not a whole number from 1 to 65536'),
    ({'image_size': 56}, {'size': 56}, 'its config and weights do not make an HTNet (the config makes layers.0.0.pos_emb [4], the weights hold [1])'),
    ({'image_size': 30}, {'size': 30}, 'its config does not make an HTNet (MerError: HTNet: image_size 30 is not divisible by patch_size 7)'),
    ({'num_hierarchies': 10 ** 9}, None, 'config model: num_hierarchies 1000000000 is not a whole number from 1 to 65536'),
    ({'num_hierarchies': 9}, None, 'config model: num_hierarchies 9 / block_repeats (1, 1, 1) out of range'),
    ({'block_repeats': [1, 1, 10 ** 6]}, None, 'config model: num_hierarchies 3 / block_repeats (1, 1, 1000000) out of range'),
    ({'num_classes': 7}, None, 'config model: num_classes 7, expected 3'),
    ({'landmarks': 'mtcnn'}, None, 'config model: unknown field(s) landmarks'),
    ({'pos_emb': 'lape'}, None, 'its config and weights do not make an HTNet (1 tensor(s) the config asks for are missing, e.g. lape; 3 tensor(s) the config has no place for, e.g. layers.0.0.pos_emb)'),
])
def test_a_bogus_config_is_one_line_naming_the_file(tmp_path, frames, capsys, model, pipeline, said):
    w = smoke_weights(tmp_path / 'w.pt', model=model, pipeline=pipeline)
    on, ap = frames
    capsys.readouterr()
    assert main(['predict', '--onset', str(on), '--apex', str(ap), '--weights', str(w)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'mer-nb: error: {w}: {said}') and '\n' not in err, err
