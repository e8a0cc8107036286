"""Face detection and landmarks on the 442 real apex faces of the composite (skipped where the data is absent)."""
import numpy as np

from mer_nb.data import CANONICAL_LANDMARKS_28, load_composite, model_input
from mer_nb.faces import FACE_TEMPLATE, detect_face, detect_landmarks, plausible, scale_landmarks, with_landmarks


def test_landmarks_on_real_apex_faces(composite_root):
    faces = load_composite(composite_root, faces=True).faces
    assert faces.shape == (442, 224, 224)
    raw = [detect_face(f) for f in faces]
    found = np.array([r is not None for r in raw])
    ok = np.array([r is not None and bool(plausible(r.landmarks, 224)) for r in raw])
    # measured: 441/442 found, all of them plausible (inside, eyes above nose above mouth, left left of right)
    assert found.mean() >= 0.97 and ok.mean() >= 0.97, (found.sum(), ok.sum())
    assert ok.sum() == found.sum()                                      # every raw detection has face geometry
    lm = np.stack([r.landmarks if k else scale_landmarks(CANONICAL_LANDMARKS_28, 28, 224) for r, k in zip(raw, ok)])
    det = ok
    sub = np.arange(0, 442, 20)                                          # detect_landmarks: same points, counted fallback
    lm_sub, det_sub = detect_landmarks(faces[sub], verbose=False)
    assert (det_sub == ok[sub]).all() and np.array_equal(lm_sub, lm[sub])
    assert ((lm >= 0) & (lm <= 223)).all()
    assert (np.maximum(lm[:, 0, 1], lm[:, 1, 1]) < lm[:, 2, 1]).all() and (lm[:, 2, 1] < np.minimum(lm[:, 3, 1], lm[:, 4, 1])).all()
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 3, 0] < lm[:, 4, 0]).all()
    # the template is the (symmetrised) mean of these detections
    assert np.abs(lm[det].mean(0) - FACE_TEMPLATE).max() < 3
    # eyes about 110 px apart on these 224 faces; detections near the canonical points (<= 3 px of 28 for 95%)
    iod = np.linalg.norm(lm[det, 1] - lm[det, 0], axis=1)
    assert 80 < np.median(iod) < 140
    d28 = np.linalg.norm(scale_landmarks(lm, 224, 28) - CANONICAL_LANDMARKS_28, axis=2)
    assert np.percentile(d28, 95) < 3, np.percentile(d28, 95)


def test_with_landmarks_feeds_model_input(composite_root):
    ds = load_composite(composite_root, faces=True).subset(np.arange(0, 442, 40))
    det = with_landmarks(ds, progress=False)
    assert det.landmarks.shape == (len(ds), 5, 2) and plausible(det.landmarks, 28).all()
    assert 'MTCNN landmarks' in det.name
    x, x0 = model_input(det), model_input(ds)
    assert x.shape == x0.shape and not np.array_equal(x, x0)   # detected landmarks move the crops
