"""Claims about the real MEGC2019 composite set (skipped, with the reason, where ../shared is absent)."""
import numpy as np

from mer_nb.data import load_composite, model_input
from mer_nb.cv import make_folds


def test_composite_counts(composite_root):
    ds = load_composite(composite_root)
    assert len(ds) == 442 and len(set(ds.subjects)) == 68
    c = ds.counts()
    assert c.loc['smic', 'samples'] == 164 and c.loc['casme2', 'samples'] == 145 and c.loc['samm', 'samples'] == 133
    assert c.loc['smic', 'subjects'] == 16 and c.loc['casme2', 'subjects'] == 24 and c.loc['samm', 'subjects'] == 28
    assert np.bincount(ds.labels).tolist() == [250, 109, 83]
    assert ds.flows.shape == (442, 3, 28, 28) and ds.flows.dtype == np.float32
    assert ds.flows.min() == 0 and ds.flows.max() == 1


def test_composite_channel_order_is_u_v_strain(composite_root):
    ds = load_composite(composite_root)
    mean = ds.flows.mean(axis=(0, 2, 3))
    assert mean[2] < 0.2 and 0.4 < mean[0] < 0.6 and 0.4 < mean[1] < 0.6, mean  # strain >= 0 sits near 0


def test_composite_faces_and_model_input(composite_root):
    ds = load_composite(composite_root, faces=True)
    assert ds.faces.shape == (442, 224, 224)
    x = model_input(ds)
    assert x.shape == (442, 3, 28, 28)
    # top-left quadrant is the left-eye crop: rows 1..14, cols 0..13 of the flow image (canonical landmark (7, 8))
    np.testing.assert_array_equal(x[:, :, :14, :14], ds.flows[:, :, 1:15, 0:14])


def test_composite_loso_has_68_leak_free_folds(composite_root):
    ds = load_composite(composite_root)
    folds = make_folds(ds.subjects)
    assert len(folds) == 68
    assert sum(len(te) for *_, te in folds) == 442
