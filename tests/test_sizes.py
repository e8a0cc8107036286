"""Untrusted image files are refused before they cost memory, and cut ones before they are read as grey.

A flow PNG of 1.2 MB can declare 20000x20000 pixels and hold them all (deflate squeezes rows of zeros ~1000:1): decoded,
it takes 2.4 GB before the 28x28 rule would refuse it; a header of more than 2^30 pixels made OpenCV abort `data check`
with its own assertion. A JPEG or PNG cut in half is decoded by OpenCV with grey where its end is missing. Each is
refused from the header or the file's end (`mer_nb.data.image_header_problem`), in one line naming the file, by the
loaders and `check_data` alike; `mer-nb data check` is run in a child process whose peak memory is measured.
"""
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mer_nb.core import MerError
from mer_nb.data import MAX_IMAGE_PIXELS, load_composite
from mer_nb.sources import check_data, load_casme3, write_synthetic_casme3


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png_of_zeros(w: int, h: int) -> bytes:
    "A genuine w x h 8-bit RGB PNG of zeros: every row is in its IDAT, so a decoder fills all w*h*3 bytes."
    z = zlib.compressobj(9)
    row = b'\0' * (3 * w + 1)
    idat = b''.join(z.compress(row) for _ in range(h)) + z.flush()
    return b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + _chunk(b'IDAT', idat) + _chunk(b'IEND', b'')


def png_declaring(w: int, h: int) -> bytes:
    "A valid 28x28 PNG whose IHDR (its CRC recomputed) declares w x h."
    b = bytearray(cv2.imencode('.png', np.zeros((28, 28, 3), np.uint8))[1].tobytes())
    b[16:24] = struct.pack('>II', w, h)
    b[29:33] = struct.pack('>I', zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def composite(d: Path, n: int = 4) -> Path:
    "n rows (n subjects, labels 0, 1, 2, 0, ...) of a drawn composite folder."
    (d / 'flow_uv_os').mkdir(parents=True); (d / 'apex_faces').mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        cv2.imwrite(str(d / 'flow_uv_os' / f's{i}_c .png'), rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
        cv2.imwrite(str(d / 'apex_faces' / f's{i}_c.jpg'), rng.integers(0, 256, (224, 224), dtype=np.uint8))
        rows.append(dict(dataset='smic', sub=f's{i}', filename_o='c', label=str(i % 3), imagename=f's{i}_c.jpg'))
    pd.DataFrame(rows).to_csv(d / 'labels.csv', index=False)
    return d


@pytest.fixture(scope='module')
def huge_png():
    b = png_of_zeros(20000, 20000)
    assert len(b) < 2_000_000
    return b


# A child process: `mer-nb data check FOLDER`, then its exit status and peak RSS (KiB) as the last stdout line.
# argv[2] == 'unchecked': the header check switched off, to show what the test guards against.
CHILD = r'''
import json, resource, sys
import mer_nb.data
if sys.argv[2] == 'unchecked': mer_nb.data.image_header_problem = lambda *a, **k: None
from mer_nb.cli import main
try: rc = main(['data', 'check', sys.argv[1]])
except BaseException as e: rc = f'{type(e).__name__}: {e}'
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))   # this process's own peak: ru_maxrss
print(json.dumps({'rc': rc, 'maxrss_kib': hwm}))                                          # keeps a forking parent's across exec
'''


def data_check(folder, mode='checked') -> tuple[list[str], dict]:
    "(stdout lines, {'rc', 'maxrss_kib', 'stderr'}) of `mer-nb data check folder` in a child process."
    r = subprocess.run([sys.executable, '-c', CHILD, str(folder), mode], capture_output=True, text=True, timeout=600)
    lines = r.stdout.splitlines()
    return lines[:-1], {**json.loads(lines[-1]), 'stderr': r.stderr}


def test_a_png_declaring_20000x20000_is_refused_from_its_header(tmp_path, huge_png):
    d = composite(tmp_path / 'ds')
    flow = d / 'flow_uv_os' / 's1_c .png'
    flow.write_bytes(huge_png)
    want = f'{d}/labels.csv: row 3: flow image: {flow} declares 400000000 pixels (at most {MAX_IMAGE_PIXELS}): refused before decoding'
    with pytest.raises(MerError) as e: load_composite(d)
    assert str(e.value) == want
    assert check_data(d) == [want]
    lines, child = data_check(d)
    assert lines == [want, f'mer-nb data check: 1 problem(s) in {d}'] and child['rc'] == 1, (lines, child)
    assert child['maxrss_kib'] < 1_200_000, child        # the import of torch and OpenCV, not the image (2.4 GB decoded)


def test_a_header_of_more_than_2_30_pixels_is_one_line_not_an_opencv_abort(tmp_path):
    d = composite(tmp_path / 'ds')
    flow, face = d / 'flow_uv_os' / 's2_c .png', d / 'apex_faces' / 's3_c.jpg'
    flow.write_bytes(png_declaring(40000, 40000)); face.write_bytes(png_declaring(65535, 65535))
    lines, child = data_check(d)
    assert lines == [f'{d}/labels.csv: row 4: flow image: {flow} declares 1600000000 pixels (at most {MAX_IMAGE_PIXELS}): refused before decoding',
                     f'{d}/labels.csv: row 5: apex face: {face} declares 4294836225 pixels (at most {MAX_IMAGE_PIXELS}): refused before decoding',
                     f'mer-nb data check: 2 problem(s) in {d}'], lines
    assert child['rc'] == 1 and child['maxrss_kib'] < 1_200_000, child
    lines, child = data_check(d, 'unchecked')                # without the header check: OpenCV's assertion
    assert child['rc'] == 2 and 'CV_IO_MAX_IMAGE_PIXELS' in child['stderr'], (lines, child)


def test_a_declared_size_other_than_28x28_is_refused_before_decoding(tmp_path):
    d = composite(tmp_path / 'ds')
    (d / 'flow_uv_os' / 's1_c .png').write_bytes(png_declaring(28, 5000))   # decodes to 5000 rows of garbage, if at all
    assert check_data(d) == [f'{d}/labels.csv: row 3: flow image: s1_c .png is 28x5000, expected 28x28']


@pytest.mark.parametrize('ext', ['jpg', 'png'])
def test_a_truncated_apex_face_is_a_problem_and_a_load_error(tmp_path, ext):
    d = composite(tmp_path / 'ds')
    df = pd.read_csv(d / 'labels.csv', dtype=str); df.loc[1, 'imagename'] = f's1_c.{ext}'; df.to_csv(d / 'labels.csv', index=False)
    face = d / 'apex_faces' / f's1_c.{ext}'
    whole = cv2.imencode(f'.{ext}', np.random.default_rng(1).integers(0, 256, (224, 224), dtype=np.uint8))[1].tobytes()
    face.write_bytes(whole + b'\0\0\0')                      # padding after the end marker: a whole image, accepted
    assert check_data(d) == []
    face.write_bytes(whole[:len(whole) // 2])
    probs = check_data(d)
    assert len(probs) == 1 and probs[0].startswith(f'{d}/labels.csv: row 3: apex face: truncated image {face} ('), probs
    with pytest.raises(MerError) as e: load_composite(d, faces=True)
    assert str(e.value) == probs[0]
    load_composite(d, faces=False)                           # the faces are not read: nothing to refuse


def test_a_truncated_casme3_frame_is_named_and_its_row_skipped(tmp_path):
    csv = write_synthetic_casme3(tmp_path / 'c3', n_subjects=2, per_class=1)
    apex = csv.parent / pd.read_csv(csv).imagename_apex[1]
    b = apex.read_bytes(); apex.write_bytes(b[:len(b) // 2])
    probs = check_data(csv)
    assert len(probs) == 1 and f'truncated apex frame {apex} (' in probs[0] and probs[0].startswith(f'{csv}: line 3 '), probs
    ds, skipped = load_casme3(csv, method='farneback', cache=False, progress=False, verbose=False)
    assert len(ds) == 5 and skipped.line.tolist() == [3] and f'truncated frame {apex}' in skipped.problem[0], skipped
