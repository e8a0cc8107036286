"""Containment and input rules of the package itself: plain names, paths inside their roots, writes refused outside
them, the flow PNG's planes read back as (u, v, strain), and an unknown label refused naming its row."""
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import mer_nb.cv as CV
from mer_nb.core import MAX_NAME, MerError, atomic_write, check_inside, inside, name_problem, plain_name, write_json
from mer_nb.data import MERDataset, load_composite, read_checked_image, read_flow_png
from mer_nb.sources import check_data

NOT_PLAIN = "is not a plain name (letters, digits, '.', '_', '-')"


@pytest.mark.parametrize('good', ['sub01', '006', 'EP02_01f', 'spNO.1', 's1-a', 'x' * MAX_NAME, 7])
def test_plain_names_pass(good):
    assert name_problem(good, 'sub') is None and plain_name(good, 'sub') == str(good)


@pytest.mark.parametrize('bad', ['../../x', '..', '.', '/abs', 'a/b', 'a\\b', 'a b', ' a', 'a\n', 'a\x00', 'a\t', 'é', 'ａ',
                                 '~', '$HOME', 'a*', 'x' * (MAX_NAME + 1)])
def test_names_that_could_leave_a_folder_are_refused(bad):
    p = name_problem(bad, 'sub')
    assert p and '\n' not in p and p.startswith('sub ')
    with pytest.raises(MerError) as e: plain_name(bad, 'sub', 'labels.csv: row 17')
    assert str(e.value).startswith('labels.csv: row 17: sub ') and '\n' not in str(e.value)


def test_the_issue_example_message():
    with pytest.raises(MerError) as e: plain_name('../../x', 'sub', 'labels.csv row 17')
    assert str(e.value) == f"labels.csv row 17: sub '../../x' {NOT_PLAIN}"
    assert name_problem('', 'sub') == 'sub is empty'


def test_inside_resolves_dotdot_and_symlinks(tmp_path):
    root = tmp_path / 'root'; (root / 'a').mkdir(parents=True)
    (root / 'in.png').touch(); (tmp_path / 'out.png').touch()
    (root / 'link_out.png').symlink_to(tmp_path / 'out.png'); (root / 'link_in.png').symlink_to(root / 'in.png')
    (root / 'dir_out').symlink_to(tmp_path); (root / 'loop').symlink_to(root / 'loop')
    assert inside(root / 'in.png', root) and inside(root / 'link_in.png', root) and inside(root / 'a' / '..' / 'in.png', root)
    assert inside(root / 'not' / 'yet' / 'there', root) and inside(root, root)
    for p in (root / 'link_out.png', root / 'dir_out' / 'x', root / '..' / 'out.png', Path('/etc/passwd'), root / 'loop',
              tmp_path / 'root2'):
        assert not inside(p, root), p
    with pytest.raises(MerError, match='lies outside'): check_inside(root / 'link_out.png', root, 'flow image')
    assert check_inside(root / 'in.png', root) == root / 'in.png'


def test_atomic_write_refuses_paths_outside_its_root(tmp_path):
    out = tmp_path / 'out'
    atomic_write(out / 'a' / 'b.npz', b'fine', root=out)
    write_json(out / 'run.json', {'a': 1}, root=out)
    atomic_write(tmp_path / 'no_root.txt', 'old call signature')           # no root: as before
    write_json(tmp_path / 'no_root.json', [1])
    (out / 'link').symlink_to(tmp_path)
    for target in (out / '..' / 'x.npz', out / 'a' / '..' / '..' / 'x.npz', Path('/tmp') / 'x_mer_nb_probe.npz', out / 'link' / 'x.npz'):
        with pytest.raises(MerError) as e: atomic_write(target, b'evil', root=out)
        assert str(e.value).startswith(f'refusing to write {target}') and '\n' not in str(e.value)
        with pytest.raises(MerError): write_json(target, {}, root=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['no_root.json', 'no_root.txt', 'out']
    assert not Path('/tmp/x_mer_nb_probe.npz').exists()
    assert sorted(p.name for p in out.rglob('*') if p.is_file()) == ['b.npz', 'run.json']   # no temp files


def test_fold_names_are_checked_before_they_name_files(toy_dataset, tmp_path):
    with pytest.raises(MerError, match="make_folds: subject '../x' " + NOT_PLAIN.replace('(', r'\(').replace(')', r'\)')):
        CV.make_folds(np.array(['a', '../x', 'b']))
    with pytest.raises(MerError, match='fold record .* lies outside'):
        CV.record_paths(tmp_path, toy_dataset, 'smoke', folds=[('../../../x', None, None)])
    with pytest.raises(MerError, match='MERDataset.subjects'):
        MERDataset(ids=['a', 'b'], datasets=['d'] * 2, subjects=['s', 'a/b'], labels=[0, 1], flows=np.zeros((2, 3, 4, 4)))


# --- the flow PNG: planes, channels ---------------------------------------------------------------------------------
def planes():
    "Three 28x28 planes that differ everywhere: u a horizontal ramp, v a vertical ramp, strain a constant."
    yy, xx = np.mgrid[0:28, 0:28]
    return (xx * 9).astype(np.uint8), (yy * 9 + 3).astype(np.uint8), np.full((28, 28), 250, np.uint8)


def test_a_png_with_distinct_planes_reads_back_as_u_v_strain(tmp_path):
    "Written as an RGB PNG by PIL (not OpenCV): R is u, G is v, B is strain (the published composite's order)."
    u, v, s = planes()
    Image.fromarray(np.stack([u, v, s], -1), 'RGB').save(tmp_path / 'f .png')
    flow = read_flow_png(tmp_path / 'f .png')
    assert flow.shape == (3, 28, 28) and flow.dtype == np.float32
    np.testing.assert_allclose(flow[0], u / 255, atol=1e-6)
    np.testing.assert_allclose(flow[1], v / 255, atol=1e-6)
    np.testing.assert_allclose(flow[2], s / 255, atol=1e-6)


def test_the_loader_puts_the_planes_in_the_dataset(tmp_path):
    u, v, s = planes()
    (tmp_path / 'flow_uv_os').mkdir(); (tmp_path / 'apex_faces').mkdir()
    Image.fromarray(np.stack([u, v, s], -1), 'RGB').save(tmp_path / 'flow_uv_os' / 's1_c1 .png')
    pd.DataFrame([dict(dataset='smic', sub='s1', filename_o='c1', label='2', apex='', imagename='s1_c1.jpg', sub_filename='')]
                 ).to_csv(tmp_path / 'labels.csv', index=False)
    ds = load_composite(tmp_path)
    np.testing.assert_allclose(ds.flows[0], np.stack([u, v, s]) / 255, atol=1e-6)
    assert ds.labels.tolist() == [2] and ds.subjects.tolist() == ['s1'] and ds.ids.tolist() == ['s1_c1']


@pytest.mark.parametrize('img,problem', [
    (np.zeros((28, 28), np.uint8), 'has 1 channel(s), expected 3'),
    (np.zeros((28, 28, 4), np.uint8), 'has 4 channel(s), expected 3'),
    (np.zeros((28, 28, 3), np.uint16), 'has uint16 samples, expected 8-bit'),
    (np.zeros((28, 30, 3), np.uint8), 'is 30x28, expected 28x28'),
])
def test_flow_pngs_that_are_not_three_8bit_channels_are_refused(tmp_path, img, problem):
    cv2.imwrite(str(tmp_path / 'f.png'), img)
    assert read_checked_image(tmp_path / 'f.png', tmp_path, 28, 3)[1] == f'f.png {problem}'
    with pytest.raises(MerError) as e: read_flow_png(tmp_path / 'f.png', 'labels.csv: row 4')
    assert str(e.value) == f'labels.csv: row 4: f.png {problem}'


# --- labels ---------------------------------------------------------------------------------------------------------
def composite(d: Path, labels):
    (d / 'flow_uv_os').mkdir(parents=True); (d / 'apex_faces').mkdir()
    rows = []
    for i, lab in enumerate(labels):
        cv2.imwrite(str(d / 'flow_uv_os' / f's{i}_c .png'), np.zeros((28, 28, 3), np.uint8))
        cv2.imwrite(str(d / 'apex_faces' / f's{i}_c.jpg'), np.zeros((8, 8), np.uint8))
        rows.append(dict(dataset='smic', sub=f's{i}', filename_o='c', label=lab, apex='', imagename=f's{i}_c.jpg', sub_filename=''))
    pd.DataFrame(rows).to_csv(d / 'labels.csv', index=False)
    return d


@pytest.mark.parametrize('label', ['3', '-1', '1.0', 'one', '01x'])
def test_an_unknown_label_is_refused_naming_its_row(tmp_path, label):
    d = composite(tmp_path, ['0', '1', label, '2'])
    want = f"{d / 'labels.csv'}: row 4: unknown label {label!r} (expected 0, 1, 2)"
    with pytest.raises(MerError) as e: load_composite(d)
    assert str(e.value) == want
    assert check_data(d) == [want]


def test_labels_with_spaces_around_are_read_as_numbers(tmp_path):
    ds = load_composite(composite(tmp_path, ['0', ' 1', '2 ']))
    assert ds.labels.tolist() == [0, 1, 2]


def test_merdataset_refuses_an_unknown_label():
    with pytest.raises(MerError, match="MERDataset.labels: unknown label 3 for id b"):
        MERDataset(ids=['a', 'b'], datasets=['d'] * 2, subjects=['s', 't'], labels=[0, 3], flows=np.zeros((2, 3, 4, 4)))
