"""Metrics and the statistics of comparisons, on cases with a known answer: UF1/UAR, sample- and subject-level
intervals, the paired subject-level test, Holm's correction and compare_arms."""
import numpy as np
import pandas as pd
import pytest

from mer_nb.core import MerError
from mer_nb.metrics import (bootstrap_ci, cluster_bootstrap_ci, compare_arms, holm, paired_comparison, score_predictions,
                            uar, uf1)

N_BOOT, N_PERM = 300, 400


def noisy(y, p_right, seeds, gen):
    "Predictions (seeds, n): right with probability p_right (scalar or per sample), otherwise one of the two wrong classes."
    wrong = (y + gen.integers(1, 3, (seeds, len(y)))) % 3
    return np.where(gen.random((seeds, len(y))) < p_right, y, wrong)


@pytest.fixture
def planted():
    "20 subjects of 12 samples, 3 seeds: arm a right half of the time, arm b right 90% of the time on 16 subjects."
    gen = np.random.default_rng(0)
    subj = np.repeat(np.arange(20), 12)
    y = gen.integers(0, 3, len(subj))
    a = noisy(y, 0.5, 3, gen)
    return y, a, np.where(subj < 16, noisy(y, 0.9, 3, gen), a), subj


def toy_preds(n_subj=16, per=8, seeds=(0, 1, 2), seed=0):
    "A predictions table as run_cv returns it: methods base (50% right), strong (90%) and copy (the same as base)."
    gen = np.random.default_rng(seed)
    n = n_subj * per
    y = gen.integers(0, 3, n)
    frames = []
    for s in seeds:
        base, strong = noisy(y, 0.5, 1, gen)[0], noisy(y, 0.9, 1, gen)[0]
        for method, p in (('base', base), ('strong', strong), ('copy', base)):
            frames.append(pd.DataFrame({'method': method, 'selection': 'last', 'seed': s, 'fold': np.arange(n) // per,
                                        'id': [f'c{i}' for i in range(n)], 'dataset': np.where(np.arange(n) < n // 2, 'smic', 'samm'),
                                        'subject': np.arange(n) // per, 'label': y, 'pred': p}))
    return pd.concat(frames, ignore_index=True)


# --- UF1 / UAR (issue 18 item 7) ---

def test_uf1_counts_a_never_predicted_class_as_zero():
    # class 2 is never predicted: F1 = (1, 2*1/(1+3), 0) -> UF1 0.5 (0.75 if class 2 were dropped); recall (1, 1, 0)
    assert uf1([0, 1, 2, 2], [0, 1, 1, 1]) == pytest.approx(0.5)
    assert uar([0, 1, 2, 2], [0, 1, 1, 1]) == pytest.approx(2 / 3)
    assert uf1([0, 1], [0, 1]) == pytest.approx(2 / 3)     # class 2 absent from both: still one of three classes
    y = np.array([0] * 250 + [1] * 109 + [2] * 83)          # the composite's labels, all predicted negative
    assert uf1(y, np.zeros_like(y)) == pytest.approx(2 * 250 / (250 + 442) / 3)


@pytest.mark.parametrize('call, bad', [
    (lambda: uf1([0, 1, 3], [0, 1, 2]), '3'),
    (lambda: uar([0, 1, 2], [0, 1, 3]), '3'),
    (lambda: uf1([0, -1, 2], [0, 1, 2]), '-1'),
    (lambda: uf1([0, 1.5], [0, 1]), '1.5'),
    (lambda: bootstrap_ci([0, 1, 3, 2], [0, 1, 2, 2], n_boot=10), '3'),
    (lambda: cluster_bootstrap_ci([0, 1, 2, 2], [0, 1, 3, 2], [0, 0, 1, 1], n_boot=10), '3'),
    (lambda: paired_comparison([0, 1, 2, 2], [0, 1, 2, 2], [0, 1, 2, 3], [0, 0, 1, 1], n_boot=10, n_perm=10), '3'),
])
def test_unknown_label_is_refused(call, bad):
    with pytest.raises(MerError, match=f'unknown label {bad}'):
        call()


# --- intervals ---

def test_intervals_are_wider_than_zero():
    gen = np.random.default_rng(1)
    subj = np.repeat(np.arange(15), 20)
    y = gen.integers(0, 3, len(subj))
    p = noisy(y, 0.7, 1, gen)[0]
    for metric, point in (('UF1', uf1(y, p)), ('UAR', uar(y, p))):
        for lo, hi in (bootstrap_ci(y, p, metric, n_boot=N_BOOT), cluster_bootstrap_ci(y, p, subj, metric, n_boot=N_BOOT)):
            assert lo < point < hi and hi - lo > 0.03, (metric, lo, hi)


def test_cluster_interval_with_one_sample_per_subject_is_the_sample_interval():
    gen = np.random.default_rng(2)
    y = gen.integers(0, 3, 200)
    p = noisy(y, 0.6, 2, gen)
    np.testing.assert_allclose(cluster_bootstrap_ci(y, p, np.arange(200), n_boot=N_BOOT), bootstrap_ci(y, p, n_boot=N_BOOT), rtol=0, atol=1e-12)


def test_clustering_widens_the_interval_when_subjects_are_all_right_or_all_wrong():
    gen = np.random.default_rng(3)
    subj = np.repeat(np.arange(20), 15)
    y = gen.integers(0, 3, len(subj))
    p = np.where(subj < 12, y, (y + 1) % 3)                  # 12 subjects entirely right, 8 entirely wrong
    lo_s, hi_s = bootstrap_ci(y, p, n_boot=N_BOOT)
    lo_c, hi_c = cluster_bootstrap_ci(y, p, subj, n_boot=N_BOOT)
    assert lo_c < uf1(y, p) < hi_c
    assert hi_c - lo_c > 2.5 * (hi_s - lo_s), ((lo_s, hi_s), (lo_c, hi_c))   # about sqrt(15) wider in theory


def test_clustering_changes_little_when_samples_are_independent():
    gen = np.random.default_rng(4)
    subj = np.repeat(np.arange(40), 10)
    y = gen.integers(0, 3, len(subj))
    p = noisy(y, 0.6, 1, gen)[0]
    lo_s, hi_s = bootstrap_ci(y, p, n_boot=N_BOOT)
    lo_c, hi_c = cluster_bootstrap_ci(y, p, subj, n_boot=N_BOOT)
    assert 0.7 < (hi_c - lo_c) / (hi_s - lo_s) < 1.4, ((lo_s, hi_s), (lo_c, hi_c))


def test_cluster_interval_refuses_one_subject_and_an_unknown_metric():
    with pytest.raises(MerError, match='at least 2'):
        cluster_bootstrap_ci([0, 1, 2], [0, 1, 2], ['s1'] * 3)
    with pytest.raises(MerError, match="unknown metric 'f1'"):
        cluster_bootstrap_ci([0, 1, 2], [0, 1, 2], [1, 2, 3], metric='f1')


# --- the paired test ---

@pytest.mark.parametrize('paired_seeds', [True, False])
def test_identical_arms_give_zero_difference_and_p_one(planted, paired_seeds):
    y, a, _, subj = planted
    r = paired_comparison(y, a, a, subj, n_boot=N_BOOT, n_perm=N_PERM, paired_seeds=paired_seeds)
    assert (r['diff'], r['p'], r['ci_low'], r['ci_high']) == (0.0, 1.0, 0.0, 0.0)
    assert r['value_a'] == r['value_b'] == pytest.approx(np.mean([uf1(y, x) for x in a]))
    if paired_seeds: assert r['agreement'] == 1.0


def test_planted_effect_is_found(planted):
    y, a, b, subj = planted
    r = paired_comparison(y, a, b, subj, n_boot=N_BOOT, n_perm=N_PERM)
    assert r['diff'] == pytest.approx(np.mean([uf1(y, x) for x in b]) - np.mean([uf1(y, x) for x in a]))
    assert r['p'] < 0.01 and 0 < r['ci_low'] < r['diff'] < r['ci_high'], r
    rev = paired_comparison(y, b, a, subj, n_boot=N_BOOT, n_perm=N_PERM, metric='UAR')
    assert rev['p'] < 0.01 and rev['ci_low'] < rev['diff'] < rev['ci_high'] < 0, rev
    assert rev['diff'] == pytest.approx(np.mean([uar(y, x) for x in a]) - np.mean([uar(y, x) for x in b]))


@pytest.mark.parametrize('paired_seeds', [True, False])
def test_p_values_under_no_difference_are_roughly_uniform(paired_seeds):
    gen = np.random.default_rng(5)
    subj = np.repeat(np.arange(16), 8)
    ps = []
    for r in range(40):
        y = gen.integers(0, 3, len(subj))
        skill = np.repeat(gen.uniform(0.2, 0.9, 16), 8)        # subject difficulty shared by both arms
        ps.append(paired_comparison(y, noisy(y, skill, 2, gen), noisy(y, skill, 2, gen), subj, n_boot=20, n_perm=200,
                                    seed=r, paired_seeds=paired_seeds)['p'])
    ps = np.array(ps)
    assert 0.35 < ps.mean() < 0.65 and (ps < 0.05).mean() <= 0.15, np.sort(ps)


def test_seed_sets_of_different_size_need_paired_seeds_false(planted):
    y, a, b, subj = planted
    with pytest.raises(MerError, match='paired_seeds=False'):
        paired_comparison(y, a, b[:2], subj)
    r = paired_comparison(y, a, b[:2], subj, n_boot=N_BOOT, n_perm=N_PERM, paired_seeds=False)
    assert r['n_seeds'] == '3/2' and r['p'] < 0.01 and r['ci_low'] > 0
    assert r['diff'] == pytest.approx(np.mean([uf1(y, x) for x in b[:2]]) - np.mean([uf1(y, x) for x in a]))


def test_agreement_by_hand():
    y, g = [0, 1, 2, 0], [0, 0, 1, 1]
    a, b = np.array([[0, 1, 2, 0], [0, 0, 0, 0]]), np.array([[0, 1, 1, 1], [0, 0, 0, 0]])
    assert paired_comparison(y, a, b, g, n_boot=5, n_perm=5)['agreement'] == pytest.approx((2 / 4 + 1) / 2)
    # unpaired: the mean over the four pairs (seed of a, seed of b): (a0, b0) 2/4, (a0, b1) 2/4, (a1, b0) 1/4, (a1, b1) 1
    assert paired_comparison(y, a, b, g, n_boot=5, n_perm=5, paired_seeds=False)['agreement'] == pytest.approx((0.5 + 0.5 + 0.25 + 1) / 4)


# --- Holm ---

def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_array_equal(holm([0.6, 0.7]), [1.0, 1.0])   # 1.2 and 0.7, capped and kept in order
    np.testing.assert_array_equal(holm([0.2]), [0.2])
    p = np.random.default_rng(6).random(9)
    adj = holm(p)
    assert (adj >= p).all() and (np.diff(adj[np.argsort(p)]) >= 0).all() and adj.max() <= 1
    with pytest.raises(MerError):
        holm([0.1, 1.5])


# --- compare_arms ---

CMP = [{'name': 'strong vs base', 'a': {'method': 'base'}, 'b': {'method': 'strong'}},
       {'a': {'method': 'base'}, 'b': {'method': 'copy'}},
       {'name': 'base vs strong', 'a': {'method': 'strong'}, 'b': {'method': 'base'}}]


def test_compare_arms_verdicts_and_holm():
    preds = toy_preds()
    t = compare_arms(preds, CMP, n_boot=N_BOOT, n_perm=N_PERM)
    assert {'comparison', 'a', 'b', 'dataset', 'metric', 'diff', 'ci_low', 'ci_high', 'p', 'p_holm', 'n_subjects', 'n_seeds',
            'agreement', 'verdict'} <= set(t.columns)
    assert t.verdict.tolist() == ['b better', 'not resolved', 'a better']
    assert t.loc[1, ['comparison', 'diff', 'p', 'p_holm', 'agreement']].tolist() == ['method=copy vs method=base', 0.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(t.p_holm, holm(t.p))
    assert (t.p_holm >= t.p).all() and t.p_holm[0] == 3 * t.p[0] and t.n_subjects.tolist() == [16] * 3 and t.n_seeds.tolist() == [3] * 3
    y = preds[preds.method == 'base'].drop_duplicates('id').label.to_numpy()
    pa = preds[preds.method == 'base'].pred.to_numpy().reshape(3, -1)
    assert t.loc[0, 'value_a'] == pytest.approx(np.mean([uf1(y, x) for x in pa]))
    per = compare_arms(preds, CMP[:1], per_dataset=True, n_boot=50, n_perm=50)
    assert per.dataset.tolist() == ['composite', 'samm', 'smic'] and per.n_samples.tolist() == [128, 64, 64]


@pytest.mark.parametrize('drop, comparisons, message', [
    (lambda d: (d.method == 'strong') & (d.id == 'c3'), CMP[:1], 'same samples'),
    (lambda d: (d.method == 'strong') & (d.seed == 2), CMP[:1], 'different seeds'),
    (lambda d: (d.method == 'strong') & (d.seed == 2) & (d.id == 'c5'), CMP[:1], 'seed 2 lacks 1'),
    (None, [{'a': {'method': 'base'}, 'b': {'method': ['strong', 'copy']}}], 'more than once'),
    (None, [{'a': {'method': 'base'}, 'b': {'arm': 'x'}}], "no column 'arm'"),
    (None, [{'a': {'method': 'base'}, 'b': {'method': 'none'}}], 'no predictions match'),
    (None, [({'method': 'base'}, {'method': 'strong'})], 'expected a dict'),
])
def test_compare_arms_refuses_arms_that_cannot_be_paired(drop, comparisons, message):
    preds = toy_preds(n_subj=4, per=3)
    if drop is not None: preds = preds[~drop(preds)]
    with pytest.raises(MerError, match=message):
        compare_arms(preds, comparisons, n_boot=10, n_perm=10)


def test_compare_arms_refuses_arms_that_disagree_on_labels():
    preds = toy_preds(n_subj=4, per=3)
    preds.loc[(preds.method == 'strong') & (preds.id == 'c1'), 'label'] += 1
    preds.loc[(preds.method == 'strong') & (preds.id == 'c1'), 'label'] %= 3
    with pytest.raises(MerError, match="label of id 'c1'"):
        compare_arms(preds, CMP[:1], n_boot=10, n_perm=10)


def test_compare_arms_noise_floor_with_disjoint_seed_sets():
    preds = toy_preds(seeds=range(6))
    c = [{'name': 'noise floor', 'a': {'method': 'base', 'seed': [0, 1, 2]}, 'b': {'method': 'base', 'seed': [3, 4, 5]}}]
    with pytest.raises(MerError, match='paired_seeds=False'):
        compare_arms(preds, c)
    t = compare_arms(preds, c, paired_seeds=False, n_boot=N_BOOT, n_perm=N_PERM)
    assert t.verdict[0] == 'not resolved' and t.ci_low[0] < 0 < t.ci_high[0]
    w = preds[preds.method == 'base'].pivot(index='id', columns='seed', values='pred').to_numpy().T
    hand = np.mean([(w[i] == w[j]).mean() for i in range(3) for j in range(3, 6)])
    assert t.agreement[0] == pytest.approx(hand)


def test_score_predictions_subject_interval_only_when_asked():
    preds = toy_preds(n_subj=6, per=5, seeds=(0, 1))
    preds = preds[preds.method != 'copy']
    default = score_predictions(preds, n_boot=50)
    subj = score_predictions(preds, n_boot=50, cluster='subject')
    pd.testing.assert_series_equal(default.value, subj.value)
    g = preds[(preds.method == 'base')]
    wide = g.pivot(index='id', columns='seed', values='pred')
    meta = g.drop_duplicates('id').set_index('id').loc[wide.index]
    y, p = meta.label.to_numpy(), wide.to_numpy().T
    row = lambda s: s[(s.method == 'base') & (s.dataset == 'composite') & (s.metric == 'UF1')].iloc[0]
    assert (row(default).ci_low, row(default).ci_high) == bootstrap_ci(y, p, n_boot=50)
    assert (row(subj).ci_low, row(subj).ci_high) == cluster_bootstrap_ci(y, p, meta.subject.to_numpy(), n_boot=50)
