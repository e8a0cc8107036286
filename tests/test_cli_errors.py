"""`mer-nb` fails in one line and stops cleanly (issue 18, items 4 and 5; issue 14/17: defaults, help, --version).

The bad-input probes are in test_probes_cli.py; here: how each kind of exception is told, --debug and MER_NB_DEBUG,
help text and defaults, and SIGINT/SIGTERM ending the notebook kernel with its worker processes."""
import argparse
import inspect
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import mer_nb
import mer_nb.cli as C
from mer_nb.core import MerError


@pytest.mark.parametrize('exc, line', [
    (MerError('labels.csv row 3:\n  unknown label 7'), 'mer-nb: error: labels.csv row 3: unknown label 7'),
    (PermissionError(13, 'Permission denied', '/data/out/table1.csv'), 'mer-nb: error: /data/out/table1.csv: Permission denied'),
    (FileExistsError(17, 'File exists', '/a', None, '/b'), 'mer-nb: error: /a -> /b: File exists'),
    (RuntimeError('first\nsecond\n\nthird'), 'mer-nb: error: RuntimeError: first second third (run with --debug for the traceback)'),
    (KeyError('model'), "mer-nb: error: KeyError: 'model' (run with --debug for the traceback)"),
])
def test_every_exception_is_one_line(exc, line, monkeypatch, capsys):
    def boom(a): raise exc
    monkeypatch.setattr(C, '_run', boom)
    monkeypatch.delenv('MER_NB_DEBUG', raising=False)
    assert C.main(['data', 'check', 'x']) == 2
    assert capsys.readouterr().err == line + '\n'


def test_debug_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr(C, '_run', lambda a: (_ for _ in ()).throw(OSError(5, 'Input/output error', '/x')))
    monkeypatch.delenv('MER_NB_DEBUG', raising=False)
    for argv in (['--debug', 'data', 'check', 'x'], ['data', 'check', 'x', '--debug']):
        with pytest.raises(OSError): C.main(argv)
    monkeypatch.setenv('MER_NB_DEBUG', '1')
    with pytest.raises(OSError): C.main(['data', 'check', 'x'])
    monkeypatch.setenv('MER_NB_DEBUG', '0')
    assert C.main(['data', 'check', 'x']) == 2


def test_debug_through_the_console_entry(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'MER_NB_DEBUG'}
    r = subprocess.run([sys.executable, '-m', 'mer_nb', 'reproduce', '--seeds', 'a,b', '--debug'], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode != 0 and 'Traceback (most recent call last)' in r.stderr and "MerError: --seeds a,b: 'a' is not a seed" in r.stderr


def _all_actions(ap):
    for a in ap._actions:
        if hasattr(a, 'choices') and isinstance(a.choices, dict):
            for sub in a.choices.values(): yield from _all_actions(sub)
        elif a.option_strings: yield ap.prog, a


def test_every_option_has_help_and_shows_its_default():
    ap = C.parser()
    for prog, a in _all_actions(ap):
        assert a.help, f'{prog} {a.option_strings}: no help text'
        h = C._Formatter(prog)._get_help_string(a)
        if a.default not in (None, False, argparse.SUPPRESS) and not a.required and a.dest not in ('help', 'version'):
            assert '(default: %(default)s)' in h or '%(default)' in h, (prog, a.option_strings)
    rep = ap._subparsers._group_actions[0].choices['reproduce'].format_help()
    assert '(default: quick)' in rep and '(default: reports)' in rep and '(default: 0)' in rep


def test_python_and_command_line_share_the_default_preset():
    ap = C.parser()
    cli_default = ap._subparsers._group_actions[0].choices['reproduce'].get_default('preset')
    assert inspect.signature(C.reproduce).parameters['preset'].default == cli_default == 'quick'


def test_version(capsys):
    with pytest.raises(SystemExit) as e: C.main(['--version'])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f'mer-nb {mer_nb.__version__}'


def test_notebooks_are_package_data():
    d = C.experiments_dir()
    assert d == Path(mer_nb.__file__).parent / 'notebooks'
    assert sorted(p.stem for p in d.glob('*.ipynb')) == sorted({a.notebook for a in C.ARTEFACTS.values()} | {'artefact'})


def _start(tmp_path, argv, min_children):
    "`mer-nb reproduce ...` in a process of its own; returns it once it has `min_children` descendants."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MER_NB_CACHE': str(tmp_path / 'cache')}
    env.pop('MER_NB_DEBUG', None)
    p = subprocess.Popen([sys.executable, '-m', 'mer_nb', 'reproduce', *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, cwd=tmp_path)
    t0 = time.time()
    while len(psutil.Process(p.pid).children(recursive=True)) < min_children:
        assert p.poll() is None and time.time() - t0 < 240, p.communicate()
        time.sleep(0.2)
    return p


def _gone(procs):
    return all(not q.is_running() or q.status() == psutil.STATUS_ZOMBIE for q in procs)


@pytest.mark.parametrize('sig, argv, min_children', [
    (signal.SIGTERM, ['--preset', 'smoke', '--only', 'table1', '--workers', '2'], 3),      # the kernel and its two training workers
    (signal.SIGINT, ['--preset', 'smoke', '--only', 'table1'], 1),
])
def test_signal_ends_the_kernel_and_its_workers(tmp_path, sig, argv, min_children):
    out = tmp_path / 'out'
    (out / 'table1').mkdir(parents=True)
    (out / 'table1' / 'table1.csv').write_text('a complete table of an earlier run\n')
    p = _start(tmp_path, [*argv, '--out', str(out)], min_children)
    tree = psutil.Process(p.pid).children(recursive=True)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    tagged = [l for l in err.splitlines() if l.startswith('mer-nb: ')]
    assert tagged == [f'mer-nb: error: stopped by {signal.Signals(sig).name}; the notebook kernel and its workers were ended, no file half written'], err
    assert err.splitlines()[-1] == tagged[0] and 'Traceback' not in err
    time.sleep(0.5)
    assert _gone(tree), [q for q in tree if q.is_running()]
    left = sorted(str(f.relative_to(out)) for f in out.rglob('*') if f.is_file())
    assert [f for f in left if not f.startswith('runs/')] == ['table1/table1.csv'], left      # no staging folder, no partial file
    assert (out / 'table1' / 'table1.csv').read_text() == 'a complete table of an earlier run\n'
    assert not any(f.endswith('.tmp') for f in left), left
