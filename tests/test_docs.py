"""The documentation site: the command `make docs` runs builds it, a real headless Chromium renders its pages,
and no link inside it is broken.

The site is built from a copy of the repository in which one library notebook carries a figure output where none
has one yet, and `results/` holds one small artefact where the repository has none, so that both paths are
exercised today. Light imports only: it also runs in a venv with just the docs packages and pytest
(`pytest --noconftest tests/test_docs.py`: conftest.py imports torch).
"""
import base64
import functools
import http.server
import json
import re
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path('/usr/bin/chromium')
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']  # playwright adds --headless and the --user-data-dir


def png(w=40, h=30):
    """A small solid-colour PNG, written without an imaging library."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    rows = b''.join(b'\x00' + b'\x30\x80\xc0' * w for _ in range(h))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def heading(nb):
    """The first level-1 heading of a notebook."""
    text = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
    return re.search(r'^#\s+(.+)$', text, re.M).group(1).replace('`', '').strip()


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ('href', 'src') and v]


def broken_links(site):
    """(page, link) for every link of every page of `site` that stays inside the site and finds no file there."""
    site, bad = Path(site).resolve(), []
    for page in sorted(site.rglob('*.html')):
        parser = Links()
        parser.feed(page.read_text(errors='replace'))
        for url in parser.urls:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or not parts.path:  # another host, data:, mailto:, or this page
                continue
            base = site if parts.path.startswith('/') else page.parent
            target = (base / unquote(parts.path).lstrip('/')).resolve()
            if target.is_dir():
                target = target / 'index.html'
            if not target.is_file() or site not in target.parents:
                bad.append((page.relative_to(site).as_posix(), url))
    return bad


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """(site folder, notebook page with a figure, that notebook's heading), built by the command `make docs` runs."""
    tmp = tmp_path_factory.mktemp('docs')
    repo = tmp / 'repo'
    skip = shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints')
    for name in ('docs', 'nbs', 'mer_nb', 'bench', 'results', 'README.md', 'settings.ini', 'LICENSE', 'CITATION.cff'):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=skip)
        elif src.is_file():
            shutil.copy2(src, repo / name)
    library = sorted(p for p in (repo / 'nbs').glob('*.ipynb') if p.stem != 'index')
    with_png = [p for p in library if '"image/png"' in p.read_text()]
    path = (with_png or library)[0]
    nb = json.loads(path.read_text())
    if not with_png:  # no notebook keeps a figure yet: give the first one a figure output, as if it had been run
        cell = next(c for c in nb['cells'] if c['cell_type'] == 'code')
        cell['outputs'] = [{'output_type': 'display_data', 'metadata': {},
                            'data': {'image/png': base64.b64encode(png()).decode(), 'text/plain': '<Figure>'}}]
        path.write_text(json.dumps(nb))
    if not (ROOT / 'results').exists():  # one artefact: a table linking a notebook, a figure, a data file
        art = repo / 'results' / 'demo'
        art.mkdir(parents=True)
        (art / 'table.md').write_text(f'| a | b |\n|---|---|\n| 1 | 2 |\n\n[notebook](../../nbs/{path.name}), '
                                      '[licence](../../LICENSE)\n')
        (art / 'figure.png').write_bytes(png())
        (art / 'run.json').write_text('{}')
    site = tmp / 'site'
    subprocess.run([sys.executable, str(repo / 'docs' / 'build.py'), str(site)], check=True, cwd=repo)
    return site, path.relative_to(repo / 'nbs').with_suffix('.html').as_posix(), heading(nb)


@pytest.fixture(scope='module')
def served(built):
    """The site served on the loopback address: the URL of its root."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(built[0])))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_port}/'
    httpd.shutdown()
    httpd.server_close()


def test_navigation_lists_every_notebook_and_module(built):
    nbs = ROOT / 'nbs'
    pages = [p.relative_to(nbs).with_suffix('.html').as_posix() for p in nbs.rglob('*.ipynb')
             if p.stem != 'index' and '.ipynb_checkpoints' not in p.parts]
    pages += [f'api/{p.stem}.html' for p in (ROOT / 'mer_nb').glob('*.py') if not p.stem.startswith('_')]
    parser = Links()
    parser.feed((built[0] / 'index.html').read_text())
    assert len(pages) > 20 and not set(pages + ['results/index.html']) - set(parser.urls)


def test_no_broken_link(built):
    assert broken_links(built[0]) == []


def test_broken_link_is_found(built, tmp_path):
    site = shutil.copytree(built[0], tmp_path / 'site')
    index = site / 'index.html'
    index.write_text(index.read_text().replace('</body>', '<a href="api/no_such_module.html">x</a></body>'))
    assert broken_links(site) == [('index.html', 'api/no_such_module.html')]


def test_pages_render_in_chromium(built, served, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip('no /usr/bin/chromium: `make test` installs it (apt-get install chromium) only when run as root')
    from playwright.sync_api import sync_playwright
    _, notebook, title = built
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / 'profile'), executable_path=str(CHROMIUM),
                                                       headless=True, args=FLAGS)
        page = browser.new_page()
        page.route('**/*', lambda route: route.continue_() if route.request.url.startswith(served) else route.abort())
        page.goto(served + 'index.html')
        assert 'mer_nb' in page.title()
        assert page.locator('article h1').first.inner_text().strip()
        page.goto(served + notebook)
        assert title in page.locator('article h1').first.inner_text()
        widths = page.eval_on_selector_all('article img', 'imgs => Promise.all(imgs.map('
                                           'i => i.decode().then(() => i.naturalWidth, () => 0)))')
        assert widths and max(widths) > 0, f'no figure loaded on {notebook}: {widths}'
        browser.close()
