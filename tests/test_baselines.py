"""Table 1's baselines: feature extractors with known answers, models, registration, and learning on synthetic data."""
import pickle

import numpy as np
import pytest
import torch

import mer_nb.recipe as R
import mer_nb.cv as CV
import mer_nb.store as ST
from mer_nb.recipe import describe_input
from mer_nb.baselines import (BASELINES, MobileViT, OFFApexNet, STSTNet, USES_FACES, biwoof_features,
                              lbp_histograms, lbptop_features, orientation_histograms, signed_flow)
from mer_nb.data import MERDataset
from mer_nb.metrics import uf1

# make_synthetic with the two main difficulty sources off (subject styles, weak and mixed samples; noise, head motion,
# blinks and nuisance motions stay): a logistic regression scores ~1.0 on it (05_synthetic), so a working method clearly
# learns within a tiny budget, and a broken one stays at chance (UF1 1/3, or 1/6 when it predicts one class).
EASY = dict(style=(1, 1), weak_p=0, mixed_p=0)

# per method: (preset overrides, folds); networks get smoke-like budgets, SVMs have no epochs
BUDGETS = {
    'LBP-TOP': (dict(), 4),
    'Bi-WOOF': (dict(), 4),
    'STSTNet': (dict(epochs=10, lr=3e-3), 2),
    'OFF-ApexNet': (dict(epochs=10, lr=3e-3), 2),
    'MobileViT': (dict(epochs=15, lr=3e-3, batch_size=8), 2),
}


@pytest.fixture(scope='module')
def easy():
    from mer_nb.synthetic import make_synthetic
    return make_synthetic(n_subjects=8, per_class=3, seed=0, faces=True, params=EASY)


def _one(flows, faces=None):
    n = len(flows)
    return MERDataset(ids=[f'x{i}' for i in range(n)], datasets=['d'] * n, subjects=['s'] * n, labels=[0] * n, flows=flows, faces=faces)


def test_lbp_known_answers():
    const = lbp_histograms(np.full((28, 28), 0.6, np.float32))
    assert const.shape == (25, 10) and (const[:, 8] == 1).all() and const.sum() == 25  # every code: "all neighbours >= centre"
    img = np.random.default_rng(1).integers(0, 120, (28, 28))
    h = lbp_histograms(img)
    assert np.allclose(h.sum(1), 1)
    assert np.array_equal(h, lbp_histograms(2 * img + 3))                               # invariant to increasing grey maps
    assert not np.array_equal(h, lbp_histograms(img.T))                                 # but sees the texture


def test_lbptop_features_shape_and_input(easy):
    assert lbptop_features(easy.subset(range(3))).shape == (3, 4 * 25 * 10)            # apex face + u, v, strain
    no_faces = _one(easy.flows[:3])
    assert lbptop_features(no_faces).shape == (3, 3 * 25 * 10)
    assert describe_input('LBP-TOP', easy).startswith('faces+flows') and describe_input('LBP-TOP', no_faces).startswith('flows only')
    assert USES_FACES == {'LBP-TOP'}


def test_orientation_histograms_known_answers():
    z = np.zeros((28, 28))
    right = orientation_histograms(z + 1, z)
    assert (right.argmax(1) == 0).all() and np.allclose(right[:, 0], 1)                  # rightward: bin 0 (centred on 0 deg)
    assert (orientation_histograms(z, z + 1).argmax(1) == 2).all()                       # downward (image y): 90 deg
    assert (orientation_histograms(z, z - 1).argmax(1) == 6).all()                       # upward: 270 deg
    assert np.allclose(orientation_histograms(np.array([[3.0, -1.0]]), np.zeros((1, 2)), blocks=1)[0],
                       [0.75, 0, 0, 0, 0.25, 0, 0, 0])                                    # votes weighted by magnitude
    rng = np.random.default_rng(0)
    assert np.allclose(orientation_histograms(rng.standard_normal((28, 28)), rng.standard_normal((28, 28))).sum(1), 1)


def test_signed_flow_and_biwoof_strain_weighting():
    f = np.full((1, 3, 28, 28), 0.5, np.float32)
    f[0, 0] = 0.3; f[0, 0, :, :11] = 0.8          # u: columns 0-10 move right of the median (0.3 elsewhere: not 0.5)
    f[0, 2] = 0.0; f[0, 2, :, :6] = 0.6; f[0, 2, :, 6:11] = 0.2
    s = signed_flow(f)
    assert np.allclose(s[0, 0, :, 11:], 0) and np.allclose(s[0, 0, :, :11], 0.5) and np.allclose(s[0, 1], 0)
    b = biwoof_features(_one(f)).reshape(25, 8)
    assert np.isclose(np.linalg.norm(b), 1, atol=1e-5)
    assert np.isclose(b[0, 0] / b[1, 0], 3, rtol=1e-5)                                  # block weight = mean strain (0.6 : 0.2)
    assert b[:, 1:].sum() == 0 and b[2:5].sum() == 0


def test_models_match_published_sizes():
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(STSTNet()) == 1_683 and n(OFFApexNet()) == 2_664_475 and n(MobileViT()) == 448_731
    x = torch.rand(2, 3, 28, 28)
    for m in (STSTNet(), OFFApexNet(), MobileViT()):
        assert m(x).shape == (2, 3)


def test_registered_and_picklable():
    for name in BASELINES:
        m = R.get_method(name)
        again = pickle.loads(pickle.dumps(m))  # worker processes receive the Method by pickling
        assert again.factory is m.factory and again.inputs is m.inputs
    assert R.get_method('LBP-TOP').kind == R.get_method('Bi-WOOF').kind == 'sklearn'


def test_run_key_sees_faces(easy):
    p = R.get_preset('smoke')
    no_faces = MERDataset(**{**easy.__dict__, 'faces': None})
    assert ST.run_key(easy, p, 'loso', 5, 'full', method='LBP-TOP') != ST.run_key(no_faces, p, 'loso', 5, 'full', method='LBP-TOP')


@pytest.mark.parametrize('name', BASELINES)
def test_baseline_learns_on_synthetic(name, easy, tmp_path):
    overrides, k = BUDGETS[name]
    preds = CV.run_cv(easy, R.get_preset('smoke', **overrides), tmp_path, protocol='kfold', k=k, method=name, progress=False)
    last = preds[preds.selection == 'last']
    score = uf1(last.label, last.pred)
    assert score > 0.6, f'{name}: UF1 {score:.3f} on the easy synthetic set (chance 1/3)'
    if R.get_method(name).kind == 'sklearn':   # one fit per fold: both selections are the same predictions
        best = preds[preds.selection == 'best-on-test']
        assert (last.epoch == 1).all() and np.array_equal(last.pred.to_numpy(), best.pred.to_numpy())
