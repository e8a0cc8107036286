"""settings.ini (pip, via setup.py) and environment.yml (conda) must install the same packages with the same pins."""
import configparser
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(spec):
    return re.split(r'[<>=!~;\[ ]', spec, maxsplit=1)[0].lower().replace('_', '-')


def _settings():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    d = cfg['DEFAULT']
    return {_name(s): s for s in shlex.split(d['requirements']) + shlex.split(d['dev_requirements'])}


def _environment():
    env = yaml.safe_load((ROOT / 'environment.yml').read_text())
    pip = next(x['pip'] for x in env['dependencies'] if isinstance(x, dict))
    return {_name(s): s for s in pip}


def test_same_packages():
    s, e = _settings(), _environment()
    assert set(s) == set(e), f'only in settings.ini: {set(s) - set(e)}; only in environment.yml: {set(e) - set(s)}'


def test_same_pins():
    s, e = _settings(), _environment()
    diff = {k: (s[k], e[k]) for k in s if k != 'torch' and s[k].replace(' ', '') != e[k].replace(' ', '')}
    assert not diff, diff
    # torch: environment.yml pins the CPU build that `make setup` installs; settings.ini admits it
    assert e['torch'] == 'torch==2.13.0' and s['torch'].startswith('torch>=')
    make = (ROOT / 'Makefile').read_text()
    assert 'TORCH ?= torch==2.13.0' in make


def test_design_card_packages():
    names = set(_settings())
    for p in ('torch', 'jupyterlab', 'papermill', 'nbdev', 'matplotlib', 'seaborn', 'opencv-contrib-python-headless', 'diffusers'):
        assert p in names, p
