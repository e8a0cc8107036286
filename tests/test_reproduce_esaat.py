"""Tables 4 and 5 and Figure 1 through `mer-nb reproduce` (papermill), on the smoke preset and synthetic data."""
import json

import pandas as pd

from mer_nb.cli import ARTEFACTS, reproduce


def test_artefacts_registered():
    assert {ARTEFACTS[a].notebook for a in ('table4', 'table5', 'fig1')} == {'table4_lape', 'table5_esaat', 'fig1_complexity'}


def test_table4_table5_fig1_smoke(tmp_path):
    reproduce('smoke', None, 'table5,table4,fig1', tmp_path, log_output=False)
    for a, files in {'table4': ('table4.csv', 'table4.md', 'table4.png', 'table4_lape.ipynb'),
                     'table5': ('table5.csv', 'table5.md', 'table5_scores.png', 'table5_removed.csv', 'table5_esaat.ipynb',
                                'table5_attending.csv', 'table5_attending.md', 'table5_attending_scores.png'),
                     'fig1': ('fig1.csv', 'fig1.md', 'fig1.png', 'fig1_complexity.ipynb')}.items():
        for f in files: assert (tmp_path / a / f).is_file(), (a, f)
        run = json.loads((tmp_path / a / 'run.json').read_text())
        assert run['preset']['name'] == 'smoke' and run['wall_seconds'][a] > 0
    assert (tmp_path / 'runs').is_dir()                                  # the shared training-run cache
    t4 = pd.read_csv(tmp_path / 'table4' / 'table4.csv')
    assert set(t4.config) == {'preset', 'attending'} and t4.method.nunique() == 3 and set(t4.metric) == {'UF1', 'UAR'}
    assert len(t4) == 2 * 3 * 1 * 2 and t4.value.between(0, 1).all()   # configs x methods x datasets x metrics
    md4 = (tmp_path / 'table4' / 'table4.md').read_text()
    assert 'leave-one-subject-out' in md4 and '49 token(s) per attention block' in md4 and 'preset `smoke`' in md4
    t5 = pd.read_csv(tmp_path / 'table5' / 'table5.csv')
    cost = t5[t5.dataset == 'model'].pivot_table(index='method', columns='metric', values='value')
    assert set(cost.index) == {'HTNet+LAPE', 'HTNet+LAPE+ESAAT'} and (cost.params > 0).all() and (cost.cpu_ms_per_sample > 0).all()
    controls = {f'random removal (draw {d})' for d in range(3)} | {'fine-tune only'}      # the criterion's controls
    assert set(t5[t5.dataset != 'model'].method) == {'HTNet+LAPE', 'HTNet+LAPE+ESAAT'} | controls
    c5 = pd.read_csv(tmp_path / 'table5' / 'comparisons.csv')
    assert set(c5.comparison) == {'+ESAAT vs HTNet+LAPE'} | {f'ESAAT vs {c}' for c in controls}
    md5 = (tmp_path / 'table5' / 'table5.md').read_text()
    assert 'preset `smoke`' in md5 and 'training subjects only' in md5 and 'predict as the HTNet+LAPE run on 100.0%' in md5
    md5a = (tmp_path / 'table5' / 'table5_attending.md').read_text()
    assert 'attending configuration' in md5a and '49 token(s) per attention block' in md5a
    # Table 4's LAPE rows and Table 5's HTNet+LAPE rows are the same runs (shared cache), at both configurations
    t5a = pd.read_csv(tmp_path / 'table5' / 'table5_attending.csv')
    for t5x, cfg in ((t5, 'preset'), (t5a, 'attending')):
        a = t5x[(t5x.method == 'HTNet+LAPE') & (t5x.metric == 'UF1')].sort_values('dataset').value.tolist()
        b = t4[(t4.config == cfg) & (t4.method == 'HTNet+LAPE') & (t4.metric == 'UF1')].sort_values('dataset').value.tolist()
        assert len(a) == 1 and a == b, (cfg, a, b)
    f1 = pd.read_csv(tmp_path / 'fig1' / 'fig1.csv')
    assert len(f1) == 6 * 4 and set(f1.tokens_per_block) == {1, 4, 16, 64, 49}
    p = f1[(f1.image == 28) & (f1.patch == 7)].set_index('variant').params
    assert p['HTNet'] == 139_582_982 and p['+LAPE+ESAAT'] <= 0.82 * p['+LAPE']
