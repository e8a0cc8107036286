"""Probes: crafted and broken datasets, as a careless or hostile user would bring them.

Each probe builds a small dataset in a sandbox under tmp_path -- three rows of the real composite (labels.csv, their
flow PNGs and apex faces) when ../shared is present, drawn ones otherwise -- damages it one way, and asserts:
  * the loader refuses it with a one-line `MerError` naming the file and the row (or skips the row, for CAS(ME)^3),
  * `check_data` names the same problem in the same words (the two apply one rule set),
  * nothing was written outside the sandbox: tmp_path (the sandbox's parent) holds only the sandbox and an untouched
    decoy, no file named after the probe's token appeared in /tmp or beside tmp_path, and $MER_NB_CACHE points inside.
The end-to-end probes run crafted input against `cv.run_cv` and the other writers; the `sound` tests are the controls.
"""
import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import mer_nb.cv as CV
import mer_nb.recipe as R
from mer_nb.core import MerError, atomic_write, write_json
from mer_nb.data import MERDataset, _flow_path, find_composite, load_composite
from mer_nb.sources import check_data, load_casme3, write_synthetic_casme3

TOKEN = f'merprobe{uuid.uuid4().hex[:8]}'   # every escape a probe attempts is named after it
UP = '../' * 12                              # far enough up to leave any sandbox (used where only reads would follow)


class Sandbox:
    "tmp_path/sandbox/{data,out,cache} plus a decoy beside it; `check()` proves nothing was written outside the sandbox."
    def __init__(self, tmp_path):
        self.top, self.root = tmp_path, tmp_path / 'sandbox'
        self.data, self.out, self.cache = self.root / 'data', self.root / 'out', self.root / 'cache'
        for d in (self.data, self.out, self.cache): d.mkdir(parents=True)
        self.decoy = tmp_path / 'victim.npz'
        self.decoy.write_bytes(b'precious')
        self.tmp_before = set(os.listdir('/tmp'))

    def check(self):
        assert sorted(p.name for p in self.top.iterdir()) == ['sandbox', 'victim.npz'], list(self.top.iterdir())
        assert self.decoy.read_bytes() == b'precious'
        new_in_tmp = set(os.listdir('/tmp')) - self.tmp_before
        assert not [n for n in new_in_tmp if TOKEN in n], new_in_tmp
        assert not [p for p in self.top.parent.iterdir() if TOKEN in p.name]
        for d in (Path('/'), Path.home(), Path('/tmp')):
            assert not list(d.glob(f'{TOKEN}*')), d


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    sb = Sandbox(tmp_path)
    monkeypatch.setenv('MER_NB_CACHE', str(sb.cache))
    monkeypatch.setenv('MER_NB_SHARD_TIMEOUT', '30')
    yield sb
    sb.check()


def build_composite(d: Path, n: int = 3) -> Path:
    "n rows of a composite folder at d: copied from the real set (one per source dataset first), else drawn."
    (d / 'flow_uv_os').mkdir(parents=True, exist_ok=True); (d / 'apex_faces').mkdir(exist_ok=True)
    real = find_composite()
    if real is not None:
        df = pd.read_csv(real / 'labels.csv', dtype=str, keep_default_na=False)
        df = pd.concat([df.groupby('dataset').head(1), df]).drop_duplicates().head(n)
        for r in df.itertuples():
            src = _flow_path(real, r.sub, r.filename_o)
            shutil.copyfile(src, d / 'flow_uv_os' / src.name)
            shutil.copyfile(real / 'apex_faces' / r.imagename, d / 'apex_faces' / r.imagename)
    else:
        rng = np.random.default_rng(0)
        df = pd.DataFrame([dict(dataset='smic', sub=f's{i}', filename_o=f'c{i}', label=str(i % 3), apex='',
                                imagename=f's{i}_c{i}.jpg', sub_filename='') for i in range(n)])
        for r in df.itertuples():
            cv2.imwrite(str(d / 'flow_uv_os' / f'{r.sub}_{r.filename_o} .png'), rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
            cv2.imwrite(str(d / 'apex_faces' / r.imagename), rng.integers(0, 256, (224, 224), dtype=np.uint8))
    df.to_csv(d / 'labels.csv', index=False)
    return d


def rows(d):
    return pd.read_csv(d / 'labels.csv', dtype=str, keep_default_na=False)


def set_field(col, value, row=1):
    "A probe that writes `value` into `col` of data row `row` (0-based; CSV row row + 2)."
    def probe(sb):
        df = rows(sb.data); df.loc[row, col] = value.replace('TOKEN', TOKEN); df.to_csv(sb.data / 'labels.csv', index=False)
    return probe


def flow_of(sb, row=1) -> Path:
    r = rows(sb.data).iloc[row]
    return _flow_path(sb.data, r['sub'], r['filename_o'])


def replace_flow(img=None, raw: bytes | None = None):
    def probe(sb):
        p = flow_of(sb)
        if raw is not None: p.write_bytes(raw)
        else: cv2.imwrite(str(p), img)
    return probe


def link_flow_outside(sb):
    "The flow PNG of a row becomes a symlink to a (valid) PNG outside the data root."
    p = flow_of(sb)
    outside = sb.root / f'{TOKEN}.png'
    shutil.copyfile(p, outside); p.unlink(); p.symlink_to(outside)


def link_face_outside(sb):
    r = rows(sb.data).iloc[1]
    p = sb.data / 'apex_faces' / r['imagename']
    outside = sb.root / f'{TOKEN}.jpg'
    shutil.copyfile(p, outside); p.unlink(); p.symlink_to(outside)


def link_flow_folder_outside(sb):
    "flow_uv_os itself a symlink to a folder outside the data root."
    outside = sb.root / 'elsewhere'
    shutil.move(sb.data / 'flow_uv_os', outside); (sb.data / 'flow_uv_os').symlink_to(outside)


def flow_symlink_loop(sb):
    p = flow_of(sb); p.unlink(); p.symlink_to(p)


def flow_is_a_folder(sb):
    p = flow_of(sb); p.unlink(); p.mkdir()


def duplicate_row(sb):
    df = rows(sb.data); pd.concat([df, df.iloc[[1]]]).to_csv(sb.data / 'labels.csv', index=False)


def remove(what):
    def probe(sb):
        r = rows(sb.data).iloc[1]
        (flow_of(sb) if what == 'flow' else sb.data / 'apex_faces' / r['imagename']).unlink()
    return probe


def write_csv(text: str | bytes):
    def probe(sb):
        p = sb.data / 'labels.csv'
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return probe


def drop_column(col):
    def probe(sb): rows(sb.data).drop(columns=col).to_csv(sb.data / 'labels.csv', index=False)
    return probe


def csv_is_folder(sb):
    (sb.data / 'labels.csv').unlink(); (sb.data / 'labels.csv').mkdir()


NOT_PLAIN = "is not a plain name (letters, digits, '.', '_', '-')"
ROW = 'labels.csv: row 3: '
# (probe id, damage, what the loader's and the check's message must contain)
COMPOSITE_PROBES = [
    ('sub-escapes-up', set_field('sub', '../../x'), ROW + "sub '../../x' " + NOT_PLAIN),
    ('sub-escapes-to-decoy', set_field('sub', UP + 'TOKEN'), ROW + "sub '../../"),
    ('sub-absolute', set_field('sub', '/tmp/TOKEN'), ROW + f"sub '/tmp/{TOKEN}' " + NOT_PLAIN),
    ('sub-dotdot', set_field('sub', '..'), ROW + "sub '..' " + NOT_PLAIN),
    ('sub-empty', set_field('sub', ''), ROW + 'empty field(s) sub'),
    ('sub-blank', set_field('sub', '   '), ROW + 'empty field(s) sub'),
    ('sub-leading-space', set_field('sub', ' sub01'), ROW + "sub ' sub01' " + NOT_PLAIN),
    ('sub-newline', set_field('sub', 'a\nb'), ROW + "sub 'a\\nb' " + NOT_PLAIN),
    ('sub-nul', set_field('sub', 'a\x00b'), ROW + "sub 'a\\x00b' " + NOT_PLAIN),
    ('sub-backslash', set_field('sub', '..\\..\\x'), ROW + "sub '..\\\\..\\\\x' " + NOT_PLAIN),
    ('sub-fullwidth-digit', set_field('sub', 'sub０1'), ROW + "sub 'sub０1' " + NOT_PLAIN),
    ('sub-too-long', set_field('sub', 's' * 300), ROW + "sub 'ssssssssssssssssssssssss'... is 300 characters long (at most 120)"),
    ('filename-dotdot', set_field('filename_o', 'x/../../TOKEN'), ROW + f"filename_o 'x/../../{TOKEN}' " + NOT_PLAIN),
    ('filename-absolute', set_field('filename_o', '/etc/passwd'), ROW + "filename_o '/etc/passwd' " + NOT_PLAIN),
    ('imagename-escapes', set_field('imagename', '../../TOKEN.jpg'), ROW + f"imagename '../../{TOKEN}.jpg' " + NOT_PLAIN),
    ('imagename-absolute', set_field('imagename', '/etc/hostname'), ROW + "imagename '/etc/hostname' " + NOT_PLAIN),
    ('dataset-control-char', set_field('dataset', 'smic\x1b[2J'), ROW + "dataset 'smic\\x1b[2J' has control characters"),
    ('label-unknown-3', set_field('label', '3'), ROW + "unknown label '3' (expected 0, 1, 2)"),
    ('label-negative', set_field('label', '-1'), ROW + "unknown label '-1'"),
    ('label-float', set_field('label', '1.0'), ROW + "unknown label '1.0'"),
    ('label-word', set_field('label', 'happy'), ROW + "unknown label 'happy'"),
    ('label-empty', set_field('label', ''), ROW + 'empty field(s) label'),
    ('duplicate-id', duplicate_row, 'labels.csv: row 5: duplicate id'),
    ('flow-symlink-outside', link_flow_outside, ROW + 'flow image: ' ),
    ('flow-folder-symlink-outside', link_flow_folder_outside, 'labels.csv: row 2: flow image: '),
    ('flow-symlink-loop', flow_symlink_loop, ROW + 'flow image: cannot resolve'),
    ('flow-is-a-folder', flow_is_a_folder, ROW + 'flow image: missing file'),
    ('face-symlink-outside', link_face_outside, ROW + 'apex face: '),
    ('flow-grayscale', replace_flow(np.full((28, 28), 128, np.uint8)), ROW + 'flow image: ' ),
    ('flow-4-channels', replace_flow(np.full((28, 28, 4), 128, np.uint8)), ROW + 'flow image: '),
    ('flow-16-bit', replace_flow(np.full((28, 28, 3), 30000, np.uint16)), ROW + 'flow image: '),
    ('flow-wrong-size', replace_flow(np.zeros((30, 28, 3), np.uint8)), ROW + 'flow image: '),
    ('flow-not-an-image', replace_flow(raw=b'GIF89a not really'), ROW + 'flow image: unreadable image'),
    ('flow-empty-file', replace_flow(raw=b''), ROW + 'flow image: unreadable image'),
    ('flow-missing', remove('flow'), ROW + 'flow image: missing file'),
    ('face-missing', remove('face'), ROW + 'apex face: missing file'),
    ('csv-empty', write_csv(''), 'labels.csv: cannot parse'),
    ('csv-header-only', write_csv('dataset,sub,filename_o,label,apex,imagename,sub_filename\n'), 'labels.csv: no rows'),
    ('csv-missing-column', drop_column('filename_o'), 'labels.csv: missing column(s) filename_o'),
    ('csv-binary', write_csv(b'\xff\xfe\x00\x00\x81garbage\n\x00\x01'), 'labels.csv: cannot parse'),
    ('csv-is-a-folder', csv_is_folder, 'labels.csv: missing file'),
    ('csv-ragged-row', write_csv('dataset,sub,filename_o,label,apex,imagename,sub_filename\nsmic,s1,c1,0,,x.jpg,,extra,more\n'),
     'labels.csv: cannot parse'),
]
FLOW_DETAIL = {'flow-symlink-outside': 'lies outside the data root', 'flow-folder-symlink-outside': 'lies outside the data root',
               'face-symlink-outside': 'lies outside the data root',
               'flow-grayscale': 'has 1 channel(s), expected 3', 'flow-4-channels': 'has 4 channel(s), expected 3',
               'flow-16-bit': 'has uint16 samples, expected 8-bit', 'flow-wrong-size': 'is 28x30, expected 28x28'}


def one_line(msg: str):
    assert msg and '\n' not in msg and '\r' not in msg, repr(msg)


@pytest.mark.parametrize('name,damage,expected', COMPOSITE_PROBES, ids=[p[0] for p in COMPOSITE_PROBES])
def test_composite_probe(sandbox, name, damage, expected):
    build_composite(sandbox.data)
    damage(sandbox)
    with pytest.raises(MerError) as e:
        load_composite(sandbox.data, faces=True)
    msg = str(e.value)
    one_line(msg)
    assert expected in msg and msg.startswith(str(sandbox.data / 'labels.csv')), msg
    assert FLOW_DETAIL.get(name, '') in msg, msg
    probs = check_data(sandbox.data)
    for p in probs: one_line(p)
    if name == 'csv-is-a-folder':          # no labels.csv file: `find_dataset` says the folder is no dataset
        assert probs == [f'{sandbox.data}: not a dataset (expected a composite folder with labels.csv, or a CAS(ME)^3 label CSV)']
        return
    assert msg in probs, (msg, probs)      # the check names the loader's problem, in the same words


@pytest.mark.parametrize('faces', [False, True])
def test_the_sound_copy_loads_and_checks_clean(sandbox, faces):
    "The control: the undamaged copy loads, row for row, and the check finds nothing."
    build_composite(sandbox.data)
    ds = load_composite(sandbox.data, faces=faces)
    assert len(ds) == 3 and ds.flows.shape == (3, 3, 28, 28) and (ds.faces is not None) == faces
    assert check_data(sandbox.data) == []


def test_every_problem_of_a_multiply_broken_folder_is_listed(sandbox):
    "The loader stops at the first bad row; the check lists every row, each problem the loader would name there."
    build_composite(sandbox.data)
    df = rows(sandbox.data)
    df.loc[0, 'sub'] = '../x'; df.loc[2, 'label'] = '9'
    df.to_csv(sandbox.data / 'labels.csv', index=False)
    replace_flow(np.zeros((28, 28), np.uint8))(sandbox)
    probs = check_data(sandbox.data)
    assert [p.split(': ')[1] for p in probs] == ['row 2', 'row 3', 'row 4'], probs
    with pytest.raises(MerError) as e: load_composite(sandbox.data)
    assert str(e.value) == probs[0]


# --- CAS(ME)^3: the loader skips a bad row, naming it; `check_data` lists the same problem -------------------------
def casme3_field(col, value, row=1):
    def probe(csv):
        df = pd.read_csv(csv, dtype=str, keep_default_na=False); df.loc[row, col] = value.replace('TOKEN', TOKEN)
        df.to_csv(csv, index=False)
    return probe


def casme3_link_outside(csv):
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    p = csv.parent / df.loc[1, 'imagename_apex']
    outside = csv.parent.parent / f'{TOKEN}.jpg'
    shutil.copyfile(p, outside); p.unlink(); p.symlink_to(outside)


def casme3_grey16(csv):
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    p = csv.parent / df.loc[1, 'imagename_apex']
    p.unlink(); p = p.with_suffix('.png')
    cv2.imwrite(str(p), np.full((160, 200), 30000, np.uint16))
    df.loc[1, 'imagename_apex'] = str(p.relative_to(csv.parent)); df.to_csv(csv, index=False)


CASME3_PROBES = [
    ('c3-subject-escapes', casme3_field('Subject', UP + 'TOKEN'), "Subject '../../"),
    ('c3-subject-slash', casme3_field('Subject', 'spNO.1/b'), "Subject 'spNO.1/b' " + NOT_PLAIN),
    ('c3-filename-dotdot', casme3_field('Filename', '..'), "Filename '..' " + NOT_PLAIN),
    ('c3-filename-newline', casme3_field('Filename', 'b\nc'), "Filename 'b\\nc' " + NOT_PLAIN),
    ('c3-onset-path-escapes', casme3_field('imagename_onset', '../../../etc/10.jpg'), "imagename_onset '../../../etc/10.jpg' is not a relative path"),
    ('c3-onset-path-absolute', casme3_field('imagename_onset', '/etc/10.jpg'), "imagename_onset '/etc/10.jpg' is not a relative path"),
    ('c3-apex-symlink-outside', casme3_link_outside, 'lies outside the frame root'),
    ('c3-apex-16-bit', casme3_grey16, None),   # 16-bit frames: read as 8-bit grey by both (IMREAD_GRAYSCALE): accepted alike
    ('c3-label-unknown', casme3_field('label_for_3', '5'), "unknown label_for_3 '5'"),
    ('c3-offset-before-apex', casme3_field('Offset', '1'), 'after offset 1'),
    ('c3-frame-not-a-number', casme3_field('Apex', '1e3'), "Apex '1e3' is not a frame number"),
]


@pytest.mark.parametrize('name,damage,expected', CASME3_PROBES, ids=[p[0] for p in CASME3_PROBES])
def test_casme3_probe(sandbox, name, damage, expected):
    csv = write_synthetic_casme3(sandbox.data, n_subjects=2, per_class=1)   # two subjects: one is no dataset to `check_data`
    damage(csv)
    probs = check_data(csv)
    for p in probs: one_line(p)
    ds, skipped = load_casme3(csv, method='farneback', progress=False, verbose=False)
    if expected is None:                                        # accepted by both
        assert probs == [] and len(ds) == 6 and skipped.empty
        return
    assert len(ds) == 5 and skipped.line.tolist() == [3], skipped   # the bad row (CSV line 3) skipped, the others loaded
    problem = skipped.problem.iloc[0]
    one_line(problem)
    assert expected in problem, problem
    assert len(probs) == 1 and probs[0].startswith(f'{csv}: line 3 ') and probs[0].endswith(problem), (probs, problem)


def test_casme3_all_rows_bad_is_one_line(sandbox):
    csv = write_synthetic_casme3(sandbox.data, n_subjects=2, per_class=1)
    df = pd.read_csv(csv, dtype=str, keep_default_na=False); df['Subject'] = '../' + TOKEN; df.to_csv(csv, index=False)
    with pytest.raises(MerError) as e: load_casme3(csv, method='farneback', progress=False, verbose=False)
    one_line(str(e.value)); assert str(e.value) == f'{csv}: no usable rows (all 6 skipped)'
    assert len(check_data(csv)) == 6


@pytest.mark.parametrize('text,expected', [('', 'cannot parse'), ('Subject,Filename\nspNO.1,a\n', 'missing column(s) Onset')])
def test_casme3_broken_csv(sandbox, text, expected):
    csv = sandbox.data / 'casme3_part_a_labels.csv'; csv.write_text(text)
    with pytest.raises(MerError) as e: load_casme3(csv, progress=False, verbose=False)
    one_line(str(e.value)); assert expected in str(e.value) and str(csv) in str(e.value)
    probs = check_data(csv)
    assert probs == [str(e.value)]


# --- end to end: crafted subjects and fold names against the writers ------------------------------------------------
def toy(subjects):
    n = len(subjects)
    lab = np.arange(n) % 3
    flows = np.clip(0.5 + 0.15 * (lab[:, None, None, None] - 1) + np.zeros((n, 3, 28, 28)), 0, 1)
    return MERDataset(ids=[f't{i}' for i in range(n)], datasets=['a'] * n, subjects=subjects, labels=lab, flows=flows)


def test_e2e_escaping_subject_never_reaches_run_cv_writes(sandbox):
    "The issue's attack: a subject that would make a fold record land on a file outside --out. Refused at every layer."
    evil = UP + str(sandbox.decoy.with_suffix(''))[1:]              # sub-<evil>.npz would resolve to the decoy
    build_composite(sandbox.data)
    set_field('sub', evil)(sandbox)
    with pytest.raises(MerError, match='row 3: sub .* is not a plain name'): load_composite(sandbox.data)
    assert any('is not a plain name' in p for p in check_data(sandbox.data))
    with pytest.raises(MerError, match='MERDataset.subjects'): toy(['a'] * 6 + [evil] * 6)
    ds = toy(['a'] * 6 + ['b'] * 6)
    ds.subjects = np.array(['a'] * 6 + [evil] * 6)                    # past the dataset's own check
    with pytest.raises(MerError) as e:
        CV.run_cv(ds, R.get_preset('smoke', epochs=1), sandbox.out, progress=False, device='cpu', workers=1)
    one_line(str(e.value)); assert str(e.value).startswith('make_folds: subject ') and NOT_PLAIN in str(e.value)
    with pytest.raises(MerError, match='fold record .* lies outside'):     # and past make_folds, the record paths
        CV.record_paths(sandbox.out, toy(['a'] * 6 + ['b'] * 6), 'smoke', folds=[('sub-' + evil, None, None)])
    assert list(sandbox.out.iterdir()) == []


def test_e2e_run_cv_on_a_sound_copy_writes_only_under_out(sandbox):
    "The control for the probe above: the same run on sound data trains and writes under --out only."
    preds = CV.run_cv(toy(['a'] * 6 + ['b'] * 6 + ['c'] * 6), R.get_preset('smoke', epochs=1), sandbox.out, progress=False,
                      device='cpu', workers=1)
    assert len(preds) == 2 * 18 and len(list(sandbox.out.rglob('*.npz'))) == 3


@pytest.mark.parametrize('target', ['../../' + '{TOKEN}.json', '/tmp/{TOKEN}.json', 'link/{TOKEN}.json'])
def test_e2e_writers_refuse_paths_outside_their_root(sandbox, target):
    (sandbox.out / 'link').symlink_to(sandbox.top)
    path = sandbox.out / target.format(TOKEN=TOKEN) if not target.startswith('/') else Path(target.format(TOKEN=TOKEN))
    for write in (lambda: atomic_write(path, b'x', root=sandbox.out), lambda: write_json(path, {}, root=sandbox.out)):
        with pytest.raises(MerError) as e: write()
        one_line(str(e.value)); assert str(e.value).startswith('refusing to write')
    (sandbox.out / 'link').unlink()


def test_e2e_flow_cache_and_diffusion_refuse_crafted_names(sandbox):
    from mer_nb.clips import ClipSample, FlowCache
    from mer_nb.diffusion import DDPMConfig, DiffusionAugment
    c = FlowCache()
    assert c.root == sandbox.cache / 'clips'
    s = ClipSample(flow=np.zeros((3, 28, 28), np.float32), landmarks=np.zeros((5, 2), np.float32), face=np.zeros((4, 4), np.uint8),
                   onset_face=np.zeros((4, 4), np.uint8), detected=False, matrix=np.zeros((2, 3), np.float32))
    with pytest.raises(MerError, match='refusing to write'): c.put('../../' + TOKEN, s)   # would land beside the sandbox
    aug = DiffusionAugment(DDPMConfig(channels=(8, 16, 16), train_steps=1, batch_size=8, sample_steps=2, ema=0))
    x = np.full((6, 3, 28, 28), 0.5, np.float32)
    with pytest.raises(MerError, match='is not a plain name'):
        aug(x, np.arange(6) % 3, ['a'] * 6, fold='../' * 5 + TOKEN, seed=0)           # ditto, from <cache>/<key>/uses/
    with pytest.raises(MerError, match='is not a plain name'):
        aug(x, np.arange(6) % 3, ['a'] * 6, fold='sub-b', seed=0, regime='../' + TOKEN)
    assert not (sandbox.cache / 'diffusion').exists() or not list((sandbox.cache / 'diffusion').rglob('*.json'))


# --- every cache under one trust rule (mer_nb.core.cache_problem): a world-writable MER_NB_CACHE is not read back ------
def plant_clip(cache_root: Path, key: str, size: int = 28, face_size: int = 224, value: float = 0.25):
    "A well-formed clip entry (the right key, shapes and types) with flows of the planter's choosing."
    p = cache_root / key[:2] / f'{key}.npz'; p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, flow=np.full((3, size, size), value, np.float32), landmarks=np.full((5, 2), 7, np.float32),
             face=np.zeros((face_size, face_size), np.uint8), onset_face=np.zeros((face_size, face_size), np.uint8),
             detected=np.array(True), matrix=np.eye(2, 3, dtype=np.float32), key=np.array(key))


def casme3_with_planted_clips(sb) -> tuple[Path, list]:
    "A CAS(ME)^3 set in the sandbox, and a planted entry in $MER_NB_CACHE/clips for each of its clips."
    from mer_nb.clips import FlowCache, clip_params
    csv = write_synthetic_casme3(sb.data, n_subjects=2, per_class=1)
    df = pd.read_csv(csv, dtype=str)
    keys = [FlowCache(sb.cache / 'clips').key(sb.data / r.imagename_onset, sb.data / r.imagename_apex, clip_params('farneback'))
            for r in df.itertuples()]
    for k in keys: plant_clip(sb.cache / 'clips', k)
    return csv, keys


def test_planted_clips_in_a_private_cache_are_read(sandbox):
    "The control: the same entries in a folder only this user can write are the cache's own (what the rule trusts)."
    csv, _ = casme3_with_planted_clips(sandbox)
    ds, _ = load_casme3(csv, method='farneback', progress=False, verbose=False)
    assert (ds.flows == 0.25).all()


def test_a_world_writable_clip_cache_is_not_read(sandbox, recwarn):
    csv, _ = casme3_with_planted_clips(sandbox)
    sandbox.cache.chmod(0o777)                                  # anyone could have planted them
    try:
        ds, _ = load_casme3(csv, method='farneback', progress=False, verbose=False)
        said = [str(w.message) for w in recwarn if 'clip cache' in str(w.message)]
        assert said == [f"clip cache: not using {sandbox.cache / 'clips'}: {sandbox.cache} (above clips) can be written by others "
                        '(drwxrwxrwx); clips are computed without a cache'], said
        assert len(ds) == 6 and not (ds.flows == 0.25).all()     # computed from the frames, not the planted flows
    finally: sandbox.cache.chmod(0o755)


def test_a_clip_entry_not_matching_its_key_or_shape_is_recomputed(sandbox):
    csv, keys = casme3_with_planted_clips(sandbox)
    for i, k in enumerate(keys):                                # filed under another key, or of another size
        plant_clip(sandbox.cache / 'clips', k, **({'size': 14} if i % 2 else {}))
        if not i % 2:
            p = sandbox.cache / 'clips' / k[:2] / f'{k}.npz'
            z = dict(np.load(p)); z['key'] = np.array(keys[-1]); np.savez(p, **z)
    ds, _ = load_casme3(csv, method='farneback', progress=False, verbose=False)
    assert not (ds.flows == 0.25).all(axis=(1, 2, 3)).any()


def test_a_world_writable_diffusion_cache_is_refused(sandbox):
    from mer_nb.diffusion import DDPMConfig, DiffusionAugment
    aug = DiffusionAugment(DDPMConfig(channels=(8, 16, 16), train_steps=1, batch_size=8, sample_steps=2, ema=0))
    (sandbox.cache / 'diffusion').mkdir()
    (sandbox.cache / 'diffusion' / 'planted').mkdir()
    (sandbox.cache / 'diffusion' / 'planted' / 'model.pt').write_bytes(b'a generator of the planter')
    sandbox.cache.chmod(0o777)
    x = np.full((6, 3, 28, 28), 0.5, np.float32)
    try:
        with pytest.raises(MerError) as e: aug(x, np.arange(6) % 3, ['a', 'b'] * 3, fold='sub-c', seed=0)
    finally: sandbox.cache.chmod(0o755)
    one_line(str(e.value))
    assert str(e.value).startswith(f"diffusion cache: refusing {sandbox.cache / 'diffusion'}: {sandbox.cache} (above diffusion) "
                                   'can be written by others (drwxrwxrwx)'), str(e.value)
    assert sorted(p.name for p in (sandbox.cache / 'diffusion').iterdir()) == ['planted']    # nothing read or written there


# --- what a data argument is not, and what a dataset cannot give ------------------------------------------------------
@pytest.mark.parametrize('name,content,said', [
    ('weights.csv', b'PK\x03\x04\x14\x00\x00\x00\x08\x00' + bytes(range(256)), 'not a CSV (binary: it holds NUL bytes)'),
    ('model.pt', b'\x80\x02}q\x00(X\x05\x00\x00\x00state', 'not a CSV (binary: it holds NUL bytes)'),
    ('photo.csv', b'\xff\xd8\xff\xe0JFIF' + b'\xc3\x28' * 50, 'not a CSV (binary: not UTF-8 text)'),
    ('notes.csv', b'name,score\nann,3\n', 'not a CAS(ME)^3 label CSV: missing column(s) Subject, Filename, Onset, Apex, Offset, '
                                          'label_for_3 (it has name, score;'),
])
def test_data_naming_a_file_that_is_no_label_csv_says_what_it_is_not(sandbox, capsys, name, content, said):
    from mer_nb.cli import main
    from mer_nb.experiments import Experiment
    from mer_nb.predict import load_training_data
    from mer_nb.sources import open_dataset
    f = sandbox.data / name; f.write_bytes(content)
    for load in (lambda: Experiment.create('smoke', f, sandbox.out), lambda: open_dataset(f), lambda: load_training_data(f)):
        with pytest.raises(MerError) as e: load()
        one_line(str(e.value)); assert f'{f}: {said}' in str(e.value) and 'a CAS(ME)^3 label CSV, but' not in str(e.value), str(e.value)
    assert main(['data', 'check', str(f)]) == 1
    assert capsys.readouterr().out.splitlines()[0].startswith(f'{f}: {said}')


def test_a_dataset_of_one_class_is_an_error_naming_its_folder(sandbox):
    from mer_nb.sources import open_dataset
    build_composite(sandbox.data)
    df = rows(sandbox.data); df['label'] = '1'; df.to_csv(sandbox.data / 'labels.csv', index=False)
    said = f'{sandbox.data}: every sample is positive (label 1); there is nothing to tell apart'
    assert check_data(sandbox.data) == [said]
    with pytest.raises(MerError) as e: open_dataset(sandbox.data)
    assert str(e.value) == said


def test_a_dataset_of_one_subject_is_named(sandbox, recwarn):
    from mer_nb.sources import open_dataset
    csv = write_synthetic_casme3(sandbox.data, n_subjects=1, per_class=1)
    said = f'{csv}: 1 subject(s) (spNO.1); a subject-wise split (LOSO, K-fold) needs at least 2'
    assert check_data(csv) == [said]
    ds = open_dataset(csv, flow_method='farneback', progress=False)       # opened, with the one line as a warning
    assert len(ds) == 3 and [str(w.message) for w in recwarn if isinstance(w.message, Warning) and 'subject(s)' in str(w.message)] == [said]


def test_a_class_absent_from_the_dataset_is_a_warning_naming_it(sandbox, capsys):
    from mer_nb.cli import main
    from mer_nb.sources import open_dataset
    build_composite(sandbox.data)
    df = rows(sandbox.data); df['label'] = ['0', '2', '0']; df.to_csv(sandbox.data / 'labels.csv', index=False)
    said = (f'{sandbox.data}: no sample of positive (label 1) in the whole dataset; UF1 and UAR average over all 3 classes, '
            'where an absent one counts as 0 (at most 0.67 here)')
    with pytest.warns(Warning) as w: assert check_data(sandbox.data) == []
    assert [str(m.message) for m in w] == [said]
    with pytest.warns(Warning) as w: assert len(open_dataset(sandbox.data)) == 3
    assert [str(m.message) for m in w] == [said]
    assert main(['data', 'check', str(sandbox.data)]) == 0
    out = capsys.readouterr()
    assert out.err.strip() == f'mer-nb: warning: {said}' and 'no problems' in out.out
