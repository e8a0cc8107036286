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
