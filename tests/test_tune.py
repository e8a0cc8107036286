"""`mer_nb.tune`: the nested search never lets an outer test subject into its inner folds, records the configuration
chosen per outer fold (the best inner score), and scores every sample once per seed; `mer-nb tune` checks its options
before anything runs."""
import numpy as np
import pandas as pd
import pytest

from mer_nb.core import MerError
from mer_nb.cv import make_folds
from mer_nb.experiments import Experiment
from mer_nb.tune import Config, _leak_check, nested_search, read_out
from mer_nb.cli import main, parse_only


@pytest.fixture(scope='module')
def search(tmp_path_factory):
    out = tmp_path_factory.mktemp('tune')
    exp = Experiment.create('smoke', None, out/'tune', seeds=(0, 1), protocol='kfold', k=3, workers=1, progress=False)
    return exp, nested_search(exp, inner_k=2)


def test_no_outer_test_subject_in_an_inner_fold(search):
    exp, r = search
    ds = exp.dataset()
    folds = r['folds']
    outer = make_folds(ds.subjects, 'kfold', 3)
    assert set(folds.outer) == {n for n, _, _ in outer}
    for name, tr, te in outer:
        f = folds[folds.outer == name]
        train = f.train_subjects.str.split(' ').map(set)
        test = f.test_subjects.str.split(' ').map(set)
        used = set().union(*train, *test)
        assert not used & set(ds.subjects[te]), name                                 # read back from the inner records
        assert used == set(ds.subjects[tr]), name                                    # and every training subject is used
        assert all(not a & b for a, b in zip(train, test))
        for _, g in f.groupby(['seed', 'lr', 'mirror']):                             # each inner CV tests every training subject once
            assert sorted(s for t in g.test_subjects for s in t.split(' ')) == sorted(set(ds.subjects[tr]))
    assert len(folds) == 2 * 3 * 2 * 4                      # seeds x outer folds x inner folds x training configurations


def test_choice_recorded_per_outer_fold(search):
    exp, r = search
    ch, inner = r['choices'], r['inner']
    assert len(ch) == 2 * 3 and not ch.duplicated(['seed', 'outer']).any()
    for row in ch.itertuples():
        cand = inner[(inner.seed == row.seed) & (inner.outer == row.outer)]
        assert len(cand) == 4 * 3                            # lr x mirror, times epochs (2, 3, 4) read at their own epoch
        assert row.inner_uf1 == cand.inner_uf1.max()
        assert row.config == str(Config(row.lr, row.mirror, row.epochs, row.average))
    p = r['predictions']
    assert (p.method == 'HTNet tuned').all() and sorted(p.id) == sorted(np.tile(exp.dataset().ids, 2))
    assert np.allclose(p[['p0', 'p1', 'p2']].sum(axis=1), 1, atol=1e-5)
    merged = p.merge(ch, left_on=['seed', 'fold'], right_on=['seed', 'outer'])
    assert (merged.epoch == merged.epochs).all()             # each fold read at its own chosen epoch


def test_leak_is_refused(tmp_path):
    ds = Experiment.create('smoke', None, tmp_path/'leak', progress=False).dataset()
    name, tr, te = make_folds(ds.subjects, 'kfold', 2)[0]
    with pytest.raises(MerError, match=f'outer fold {name}: test subject'):
        _leak_check(ds, np.arange(len(ds)), te, name)          # an "inner" dataset holding the outer test subjects


def test_read_out_averages_probabilities():
    lg = np.zeros((3, 2, 3), np.float32)
    lg[1, :, 0] = 30; lg[2, :, 1] = 30
    assert np.allclose(read_out(lg, 3, 2), [[0.5, 0.5, 0]] * 2, atol=1e-6)
    assert read_out(lg, 2).argmax(-1).tolist() == [0, 0]


def test_tune_command(tmp_path, capsys):
    out = tmp_path/'out'
    rc = main(['tune', '--preset', 'smoke', '--seeds', '0,1', '--k', '2', '--inner-k', '2', '--configs', '2', '--baselines', 'STSTNet', '--out', str(out)])
    assert rc in (0, None)
    md = (out/'tune'/'tune.md').read_text()
    assert md.startswith('# Honest tuning') and 'subject-grouped 2-fold' in md and '**Chosen**' in md and '**Targets**' in md
    c = pd.read_csv(out/'tune'/'comparisons.csv')
    assert {'HTNet tuned vs HTNet', 'HTNet tuned seed ensemble vs HTNet seed ensemble',
            'HTNet tuned + baselines ensemble vs HTNet seed ensemble'} <= set(c.comparison)
    ch = pd.read_csv(out/'tune'/'tune_choices.csv')
    assert len(ch) == 2 * 2 and ch.lr.nunique() * ch.mirror.nunique() <= 2     # the budget: 2 training configurations


@pytest.mark.parametrize('args,says', [
    (['--inner-k', '1'], '--inner-k'),
    (['--space', '{"lr": [0.001]}'], "no values for axis 'mirror'"),
    (['--baselines', 'LBP-TOP'], "baseline 'LBP-TOP' is not a network"),
    (['--configs', '0'], '--configs'),
])
def test_tune_options_fail_before_anything_runs(tmp_path, capsys, args, says):
    out = tmp_path/'never'
    try: rc = main(['tune', '--preset', 'smoke', '--out', str(out), *args])
    except SystemExit as e: rc = e.code                          # argparse's own checks
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not out.exists()


def test_reproduce_leaves_the_extras_out():
    assert 'tune' not in parse_only(None) and parse_only('tune') == ['tune']
