"""Known-answer tests of the honest-selection guarantees: class weights from the fold's training labels only (one fold
at a time and fold-parallel), inner-val selecting on validation labels only, the softmax over classes, best-on-test
ties to the later epoch, the +1 of the permutation p-value, and UAR averaged over all three classes. Each test fails
when the guarantee it names is broken (checked by applying the break to a copy of the package)."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

import mer_nb.cv as CV
import mer_nb.store as ST
import mer_nb.metrics as M
import mer_nb.recipe as R
import mer_nb.train as T
from mer_nb.data import MERDataset
from mer_nb.metrics import compare_arms, paired_comparison, uar

# --- 1. class weights from the fold's training labels ---

# four subjects of six samples; the last one is all class 2, so weights from all 24 labels (or any set holding the test
# subject's) differ from those of every fold's 18 training labels, and the four folds' weights differ from each other
SUBJECT_LABELS = [[0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 1, 2], [0, 0, 1, 2, 2, 2], [2, 2, 2, 2, 2, 2]]


def _skewed_dataset():
    lab = np.array(sum(SUBJECT_LABELS, []))
    n = len(lab)
    rng = np.random.default_rng(0)
    flows = np.clip(0.5 + 0.15 * (lab[:, None, None, None] - 1) + 0.05 * rng.standard_normal((n, 3, 28, 28)), 0, 1)
    return MERDataset(ids=[f's{i}' for i in range(n)], datasets=['a'] * n, subjects=np.repeat(np.arange(4), 6), labels=lab,
                      flows=flows, name='skewed')


def _balanced(y):
    "The documented 'balanced' weights, n / (3 * count), computed by scikit-learn."
    return compute_class_weight('balanced', classes=np.arange(3), y=np.asarray(y))


@pytest.mark.parametrize('fold_batch', [1, 4], ids=['train_fold', 'train_folds'])
def test_class_weights_come_from_the_folds_training_labels_only(tmp_path, monkeypatch, fold_batch):
    """Catches class weights computed from all labels, the test subject's included (change 1), in the one-fold-at-a-time
    trainer (`train_fold`, fold_batch=1) and the fold-parallel one (`foldpar.train_folds`, fold_batch=4): every
    cross-entropy call of a LOSO run must use the balanced weights of exactly that fold's training labels."""
    ds = _skewed_dataset()
    preset = R.get_preset('smoke', epochs=2, class_weight='balanced')
    folds = CV.make_folds(ds.subjects)
    expected = {tuple(np.bincount(ds.labels[tr], minlength=3)): _balanced(ds.labels[tr]) for _, tr, _ in folds}
    assert len(expected) == 4 and all(len(tr) <= preset.batch_size for _, tr, _ in folds)  # one batch = the whole training set
    everything = _balanced(ds.labels)
    for w in expected.values():                             # the design: all-label weights are far from every fold's
        assert np.abs(w - everything).max() > 0.02
    np.testing.assert_allclose(expected[(9, 4, 5)], [2 / 3, 1.5, 1.2])   # the fold testing the all-class-2 subject, by hand

    seen = []
    real = F.cross_entropy

    def spy(input, target, weight=None, *a, **k):
        seen.append((np.bincount(target.detach().cpu().numpy(), minlength=3),
                     None if weight is None else weight.detach().cpu().numpy().copy()))
        return real(input, target, weight, *a, **k)

    monkeypatch.setattr(torch.nn.functional, 'cross_entropy', spy)
    monkeypatch.setattr(CV, 'needs_pinning', lambda *a, **k: False)   # train in this process, where the spy is
    monkeypatch.delenv('MER_NB_FOLD_BATCH', raising=False)
    CV.run_cv(ds, preset, tmp_path, selections=('last',), workers=1, device='cpu', progress=False, fold_batch=fold_batch)
    if fold_batch > 1:
        for p in tmp_path.rglob('*.npz'):
            with np.load(p) as r: assert int(r['fold_batch']) == 4, 'the folds did not train fold-parallel'

    assert len(seen) == len(folds) * preset.epochs, len(seen)
    for counts, w in seen:
        key = tuple(int(c) for c in counts)
        assert key in expected, f'a loss on labels with counts {key}: not one fold\'s training set'
        assert w is not None, 'no class weights in the loss'
        np.testing.assert_allclose(w, expected[key], rtol=1e-6, err_msg=f'class weights of the fold with training counts {key}')
    assert {tuple(int(c) for c in counts) for counts, _ in seen} == set(expected)   # every fold trained


# --- fold records by hand, read by collect_predictions ---

def _label_dataset(labels):
    n = len(labels)
    return MERDataset(ids=[f'r{i}' for i in range(n)], datasets=['a'] * n, subjects=np.arange(n) // 3, labels=labels,
                      flows=np.zeros((n, 3, 4, 4)))


def _record(path, **arrays):
    np.savez(path, train_loss=np.zeros(len(arrays['test_logits']), np.float32), **arrays)
    return path


def _one_hot(pred, hi=4.0):
    "Logits (..., 3) that predict `pred`."
    return np.where(np.arange(3) == np.asarray(pred)[..., None], hi, 0.0).astype(np.float32)


# --- 2. inner-val selects on validation labels only ---

# 3 epochs; test samples 0-2 (labels 0, 1, 2), validation samples 3-5 (labels 0, 1, 2): the test logits are all right at
# epoch 0 and all wrong after; the validation logits are all right at epoch 1 only
Y3 = np.array([0, 1, 2])
TEST_LOGITS = _one_hot(np.stack([Y3, (Y3 + 1) % 3, (Y3 + 1) % 3]))
VAL_LOGITS = _one_hot(np.stack([(Y3 + 1) % 3, Y3, (Y3 + 2) % 3]))


def test_inner_val_picks_the_validation_best_epoch_not_the_test_best():
    """Catches 'inner-val' choosing its epoch on the test logits and labels (change 2): test-best epoch 0,
    validation-best epoch 1 -> 1."""
    assert T.select_epoch('best-on-test', TEST_LOGITS, Y3) == 0           # the leak it must not make
    assert T.select_epoch('inner-val', TEST_LOGITS, Y3, VAL_LOGITS, Y3) == 1
    late = _one_hot(np.stack([(Y3 + 1) % 3, (Y3 + 1) % 3, Y3]))         # test-best at the last epoch instead
    assert T.select_epoch('best-on-test', late, Y3) == 2
    assert T.select_epoch('inner-val', late, Y3, VAL_LOGITS, Y3) == 1


def test_collect_predictions_inner_val_epoch_from_validation(tmp_path):
    """Catches 'inner-val' choosing its epoch on the test labels (change 2) anywhere on the way from a fold record
    to the predictions table (`collect_predictions` passing test data as validation data, or `select_epoch`)."""
    ds = _label_dataset(np.array([0, 1, 2, 0, 1, 2]))
    p = _record(tmp_path / 'f.npz', test_idx=np.arange(3), test_logits=TEST_LOGITS, val_idx=np.arange(3, 6), val_logits=VAL_LOGITS)
    out = ST.collect_predictions(ds, {('inner', 0, 'sub-0'): p}, None, ('inner-val',), 'HTNet', 'loso')
    assert out.selection.tolist() == ['inner-val'] * 3
    assert out.epoch.tolist() == [2, 2, 2]              # 1-based: epoch index 1, the validation best
    assert out.pred.tolist() == [1, 2, 0]               # the test predictions of that epoch (all wrong)


# --- 3. the probabilities are a softmax over the classes of each sample ---

def test_probabilities_are_each_samples_softmax_over_classes(tmp_path):
    """Catches the softmax taken over the sample axis instead of the class axis (change 3): p0, p1, p2 of each row sum
    to one and equal the softmax of that sample's own logits, known values."""
    ds = _label_dataset(np.array([2, 0, 1]))
    logits = np.log(np.array([[1, 2, 7], [3, 1, 1], [1, 1, 2]], np.float32))[None]   # softmax: exp(l) / sum exp(l)
    p = _record(tmp_path / 'f.npz', test_idx=np.arange(3), test_logits=logits)
    out = ST.collect_predictions(ds, {('full', 0, 'sub-0'): p}, None, ('last',), 'HTNet', 'loso')
    prob = out[['p0', 'p1', 'p2']].to_numpy()
    np.testing.assert_allclose(prob, [[0.1, 0.2, 0.7], [0.6, 0.2, 0.2], [0.25, 0.25, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(prob.sum(1), 1.0, rtol=1e-6)
    assert out.pred.tolist() == [2, 0, 2]


# --- 4. best-on-test: ties go to the later epoch ---

def test_best_on_test_ties_go_to_the_later_epoch(tmp_path):
    """Catches best-on-test ties going to the earlier epoch (change 4): the published HTNet code keeps the later one.
    Test accuracy per epoch 1/3, 2/3, 1/3, 2/3, 0 -> epoch 3 (0-based), not 1 (and not the last)."""
    y = np.array([0, 1, 2])
    right = [[0, 2, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 2, 0]]    # 1, 2, 1, 2, 0 of 3 right
    logits = _one_hot(np.array(right))
    assert [(np.array(r) == y).sum() for r in right] == [1, 2, 1, 2, 0]
    assert T.select_epoch('best-on-test', logits, y) == 3
    ds = _label_dataset(y)
    p = _record(tmp_path / 'f.npz', test_idx=np.arange(3), test_logits=logits)
    out = ST.collect_predictions(ds, {('full', 0, 'sub-0'): p}, None, ('best-on-test',), 'HTNet', 'loso')
    assert out.epoch.tolist() == [4, 4, 4] and out.pred.tolist() == [0, 1, 1]


# --- 5. the permutation p-value counts the observed arrangement: (1 + #{|null| >= |observed|}) / (1 + n_perm) ---

def test_permutation_p_value_has_the_plus_one(monkeypatch):
    """Catches the permutation p-value without its +1 (change 5): with the null differences fixed at known values,
    p = (1 + #{|null| >= |observed|}) / (1 + n_perm) exactly, in paired_comparison and compare_arms."""
    y, g = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 0, 0, 1, 1, 1])
    a, b = y.copy(), np.array([0, 1, 2, 0, 1, 1])             # UAR a = 1, b = (1 + 1 + 1/2) / 3: observed diff -1/6
    null = np.array([0.0, 0.1, -0.2, 1 / 6, 0.05])           # |null| >= 1/6: -0.2 and 1/6 (a tie counts) -> 2 of 5
    calls = []

    def fixed_null(ca, cb, metric, n_perm, *args, **kw):
        calls.append(n_perm)
        return null[:n_perm]

    monkeypatch.setattr(M, '_null_diffs', fixed_null)
    r = paired_comparison(y, a, b, g, metric='UAR', n_boot=20, n_perm=5)
    assert calls == [5] and r['diff'] == pytest.approx(-1 / 6)
    assert r['p'] == pytest.approx((1 + 2) / (1 + 5), abs=1e-12)          # 0.5; without the +1: 2/5
    preds = pd.concat([pd.DataFrame({'method': m, 'seed': 0, 'id': [f'c{i}' for i in range(6)], 'subject': g, 'label': y,
                                     'pred': p}) for m, p in (('a', a), ('b', b))], ignore_index=True)
    t = compare_arms(preds, [{'a': {'method': 'a'}, 'b': {'method': 'b'}}], metric='UAR', selection=None, n_boot=20, n_perm=5)
    assert t.p.tolist() == pytest.approx([0.5], abs=1e-12) and t.p_holm.tolist() == pytest.approx([0.5], abs=1e-12)


def test_permutation_p_value_on_an_enumerable_case():
    """Catches the permutation p-value without its +1 (change 5), with the real null: two identical subjects where b
    is all wrong and a all right. Of the 4 swaps, none and both reach |observed| = 1, one alone gives 0 exactly, so
    p = (1 + c) / (1 + n_perm) with c the draws of those two: p * (n_perm + 1) is a whole number, p is about 1/2."""
    y = np.array([0, 1, 2, 0, 1, 2])
    g = np.array([0, 0, 0, 1, 1, 1])
    a, b = y.copy(), (y + 1) % 3
    n_perm = 2000
    for paired_seeds in (True, False):
        r = paired_comparison(y, a, b, g, metric='UAR', n_boot=20, n_perm=n_perm, paired_seeds=paired_seeds)
        assert r['diff'] == -1.0
        k = r['p'] * (n_perm + 1)
        assert abs(k - round(k)) < 1e-6, f'p = {r["p"]}: not (1 + c) / (1 + {n_perm})'
        assert 0.4 < r['p'] < 0.6, r['p']
    # one subject only differs in the other direction: every swap reaches |observed| -> p = (1 + n) / (1 + n) = 1
    assert paired_comparison(y, a, np.r_[b[:3], a[3:]], g, metric='UAR', n_boot=20, n_perm=50)['p'] == 1.0


# --- 6. UAR averages the recall over all three classes ---

def test_uar_averages_over_all_three_classes():
    """Catches UAR over the present classes only (change 6): the metrics module averages the recall over all three
    classes, an absent class counting 0, in `uar` and in the pooled-count path of the comparisons."""
    assert uar([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((0.5 + 1 + 0) / 3)   # class 2 in neither: 0.5, not 0.75
    assert uar([0, 1], [0, 1]) == pytest.approx(2 / 3)                            # not 1
    assert uar([0, 0, 1, 1], [0, 2, 1, 1]) == pytest.approx(0.5)                  # class 2 only predicted
    assert uar([0, 1, 2], [0, 1, 2]) == 1.0
    y, g = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    r = paired_comparison(y, np.array([0, 1, 1, 1]), y, g, metric='UAR', n_boot=20, n_perm=20)
    assert (r['value_a'], r['value_b']) == (pytest.approx(0.5), pytest.approx(2 / 3))
