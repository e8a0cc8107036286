"""No participant's face in anything the project publishes: every committed image (image files and the figures inside
committed notebooks, which the documentation site shows) is searched for faces with OpenCV's frontal-face cascade, and
each face found is compared with the composite's 442 apex faces. The databases' licences restrict publishing their
participants' images; figures of real data show flows, landmarks and statistics, and faces come from `05_synthetic`."""
import base64
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MATCH = 0.88            # normalised correlation of 32x32 face crops; a real apex face shown in a figure scores 0.93-0.99,
                        # the synthetic faces of 05_synthetic at most 0.76 against the closest apex face
_CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + 'haarcascade_frontalface_default.xml')


def _faces(gray, min_size=24):
    return _CASCADE.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(min_size, min_size))


def _vec(gray, box):
    x, y, w, h = box
    v = cv2.resize(gray[y:y + h, x:x + w], (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    v -= v.mean()
    return v / (np.linalg.norm(v) + 1e-6)


@pytest.fixture(scope='module')
def apex_faces(composite_root):
    "One unit vector per apex face (its detected face box, else the whole aligned crop) and the file names."
    vecs, names = [], []
    for p in sorted((composite_root / 'apex_faces').iterdir()):
        g = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if g is None: continue
        found = _faces(g, 60)
        box = max(found, key=lambda b: b[2] * b[3]) if len(found) else (0, 0, g.shape[1], g.shape[0])
        vecs.append(_vec(g, box)); names.append(p.name)
    assert len(vecs) == 442
    return np.stack(vecs), names


def real_faces_in(png: bytes, refs) -> list[tuple[float, str]]:
    """(similarity, apex face) for every face found in the image `png` that matches an apex face of the composite: the best
    of small shifts and scales of the detector's box against every apex face, kept when at least `MATCH`."""
    R, names = refs
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None: return []
    hits = []
    for (x, y, w, h) in _faces(img):
        best = (0.0, '')
        for sc in (0.85, 0.92, 1.0, 1.08, 1.16):
            for dx in (-0.08, 0, 0.08):
                for dy in (-0.08, 0, 0.08):
                    s = int(round(w * sc)); xx, yy = int(round(x + w / 2 - s / 2 + dx * w)), int(round(y + h / 2 - s / 2 + dy * w))
                    if xx < 0 or yy < 0 or xx + s > img.shape[1] or yy + s > img.shape[0]: continue
                    sim = R @ _vec(img, (xx, yy, s, s)); i = int(sim.argmax())
                    if sim[i] > best[0]: best = (float(sim[i]), names[i])
        if best[0] >= MATCH: hits.append(best)
    return hits


def committed_images(root=ROOT):
    "(where, png bytes) of every committed image file and of every image inside a committed notebook."
    files = subprocess.run(['git', 'ls-files'], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        p = root / f
        if p.suffix.lower() in ('.png', '.jpg', '.jpeg', '.gif', '.bmp', '.webp'): yield f, p.read_bytes()
        elif p.suffix == '.ipynb':
            for i, c in enumerate(json.loads(p.read_text())['cells']):
                for o in c.get('outputs', []):
                    for kind in ('image/png', 'image/jpeg'):
                        if kind in o.get('data', {}): yield f'{f} (cell {i})', base64.b64decode(o['data'][kind])


def test_no_committed_image_shows_a_participant(apex_faces):
    seen, found = 0, {}
    for where, png in committed_images():
        seen += 1
        if (hits := real_faces_in(png, apex_faces)): found[where] = sorted(hits, reverse=True)[:3]
    assert seen >= 20, seen
    assert not found, f'real participants shown (similarity, apex face): {found}'


def test_the_check_finds_real_faces_and_passes_synthetic_ones(apex_faces, composite_root):
    "Known answers: a figure of real apex faces is caught, a figure of synthetic faces is not."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mer_nb.synthetic import synthetic_frames

    def figure_png(images):
        fig, ax = plt.subplots(2, 4, figsize=(8, 4))
        for a, im in zip(ax.flat, images): a.imshow(im, cmap='gray'); a.axis('off')
        import io
        buf = io.BytesIO(); fig.savefig(buf, format='png', dpi=100); plt.close(fig)      # in memory: nothing is written
        return buf.getvalue()

    real = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((composite_root / 'apex_faces').iterdir())[::60][:8]]
    assert len(real_faces_in(figure_png(real), apex_faces)) >= 2       # 8 shown; each one found would fail the check above
    synth = list(synthetic_frames(n_subjects=8, per_class=1)['apex'][::3][:8])
    assert real_faces_in(figure_png(synth), apex_faces) == []
