"""The documentation site: the command `make docs` runs builds it, a real headless Chromium renders its pages,
and no link inside it is broken. It reads offline: no page loads a script or a stylesheet from the network, its
equations are typeset by the MathJax it carries, wide tables and long code lines scroll inside the column rather
than being cut off, and the results overview names each artefact by its title.

The site is built from a copy of the repository in which one library notebook carries a figure output where none
has one yet, one carries an equation where none has one, and `results/` holds one small artefact where the
repository has none, so that every path is exercised today. Light imports only: it also runs in a venv with just
the docs packages and pytest (`pytest --noconftest tests/test_docs.py`: conftest.py imports torch).
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
MATH = re.compile(r'\$[^$\n]+\$')  # inline TeX in a Markdown cell
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


class Assets(HTMLParser):
    """The scripts and stylesheets a page loads."""
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'script' and a.get('src'):
            self.urls.append(a['src'])
        elif tag == 'link' and 'stylesheet' in (a.get('rel') or '').split() and a.get('href'):
            self.urls.append(a['href'])


def markdown(nb):
    return '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')


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
    """(site folder, notebook page with a figure, that notebook's heading, notebook page with an equation), built by
    the command `make docs` runs."""
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
    with_math = [p for p in library if MATH.search(markdown(json.loads(p.read_text())))]
    if not with_math:  # no notebook has an equation yet: give the last one a Markdown cell with one
        math = json.loads(library[-1].read_text())
        math['cells'].append({'cell_type': 'markdown', 'metadata': {}, 'source': 'Euler: $e^{i\\pi} + 1 = 0$.'})
        library[-1].write_text(json.dumps(math))
    math_page = (with_math or library[-1:])[0].relative_to(repo / 'nbs').with_suffix('.html').as_posix()
    if not (ROOT / 'results').exists():  # one artefact: a table linking a notebook, a figure, a data file
        art = repo / 'results' / 'demo'
        art.mkdir(parents=True)
        (art / 'table.md').write_text(f'| a | b |\n|---|---|\n| 1 | 2 |\n\n[notebook](../../nbs/{path.name}), '
                                      '[licence](../../LICENSE)\n')
        (art / 'figure.png').write_bytes(png())
        (art / 'run.json').write_text('{}')
    site = tmp / 'site'
    subprocess.run([sys.executable, str(repo / 'docs' / 'build.py'), str(site)], check=True, cwd=repo)
    return site, path.relative_to(repo / 'nbs').with_suffix('.html').as_posix(), heading(nb), math_page


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


def test_no_page_loads_from_the_network(built):
    """Every script and stylesheet (MathJax included) lies inside the site: it reads offline."""
    remote = []
    for page in sorted(built[0].rglob('*.html')):
        parser = Assets()
        parser.feed(page.read_text(errors='replace'))
        remote += [(page.relative_to(built[0]).as_posix(), u) for u in parser.urls
                   if urlsplit(u).scheme or u.startswith('//')]
    assert remote == []
    assert (built[0] / 'assets/mathjax/MathJax.js').is_file()


def artefacts(built):
    """(folder, title) of each artefact of the results/ the site was built from: the first heading of its tables."""
    repo = built[0].parent / 'repo'
    out = []
    for d in sorted(p for p in (repo / 'results').iterdir() if p.is_dir() and not p.name.startswith('.')):
        text = '\n'.join(f.read_text() for f in sorted(d.glob('*.md')))
        m = re.search(r'^#\s+(.+)$', text, re.M)
        out.append((d.name, m.group(1).replace('`', '').strip() if m else d.name))
    return out


def test_results_overview_names_each_artefact(built):
    """The overview shows each artefact's title, linking its page, and its figure: not a bare list of folders."""
    page = (built[0] / 'results/index.html').read_text()
    for name, title_ in artefacts(built):
        link = re.search(rf'<h2[^>]*>\s*<a href="{re.escape(name)}/index.html">([^<]+)</a>', page)
        assert link and title_ in link.group(1), f'{name}: no heading "{title_}" linking its page'
        if any(f.suffix == '.png' for f in (built[0] / 'results' / name).iterdir()):
            assert re.search(rf'<img [^>]*src="{re.escape(name)}/[^"]+\.png"', page), f'{name}: no figure'


# Whether each table and code block of the article either fits or scrolls: [tag, its width, the width it is cut to]
# for those cut off by a box that hides what overflows before any box lets it scroll.
CLIPPED = """() => Array.from(document.querySelectorAll('article table, article pre')).flatMap(el => {
  for (let a = el.parentElement; a && a.tagName !== 'BODY'; a = a.parentElement) {
    const s = getComputedStyle(a).overflowX;
    if (s === 'auto' || s === 'scroll') return [];
    if (s === 'hidden' || s === 'clip')
      return el.getBoundingClientRect().right > a.getBoundingClientRect().right + 1
        ? [[el.tagName, el.scrollWidth, a.clientWidth]] : [];
  }
  return el.getBoundingClientRect().right > document.documentElement.clientWidth + 1
    ? [[el.tagName, el.scrollWidth, document.documentElement.clientWidth]] : [];
})"""


def test_pages_render_in_chromium(built, served, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip('no /usr/bin/chromium: `make test` installs it (apt-get install chromium) only when run as root')
    from playwright.sync_api import sync_playwright
    _, notebook, title, math = built
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / 'profile'), executable_path=str(CHROMIUM),
                                                       headless=True, args=FLAGS,
                                                       viewport={'width': 1400, 'height': 900})
        page = browser.new_page()
        outside = []  # a script, stylesheet, font or image asked from outside the site
        page.on('request', lambda r: outside.append(r.url) if not r.url.startswith(served)
                and r.resource_type in ('script', 'stylesheet', 'font', 'image') else None)
        page.route('**/*', lambda route: route.continue_() if route.request.url.startswith(served) else route.abort())
        page.goto(served + 'index.html')
        assert 'mer_nb' in page.title()
        assert page.locator('article h1').first.inner_text().strip()
        page.goto(served + notebook)
        assert title in page.locator('article h1').first.inner_text()
        widths = page.eval_on_selector_all('article img', 'imgs => Promise.all(imgs.map('
                                           'i => i.decode().then(() => i.naturalWidth, () => 0)))')
        assert widths and max(widths) > 0, f'no figure loaded on {notebook}: {widths}'
        assert page.evaluate(CLIPPED) == [], f'a table or code block is cut off on {notebook}'

        # the equations: typeset by the site's own MathJax (the network is closed to the page), without errors
        page.goto(served + math)
        frames = page.locator('article [id^="MathJax-Element-"][id$="-Frame"]')
        frames.first.wait_for(timeout=30000)
        page.wait_for_function('() => MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running', timeout=30000)
        assert frames.first.bounding_box()['width'] > 0
        assert page.locator('.MathJax_Error, merror').count() == 0, f'MathJax reports an error on {math}'
        prose = '\n'.join(page.locator('article .jp-RenderedMarkdown').all_inner_texts())
        assert not MATH.search(prose), f'TeX left untypeset on {math}'

        # the results overview: a title, a headline and a figure per artefact; an artefact's page: its wide table
        # has the column's full width (no table of contents beside it) and scrolls where it is wider still
        page.goto(served + 'results/index.html')
        names = artefacts(built)
        assert page.locator('article h2').count() >= len(names)
        for name, title_ in names:
            assert title_ in page.locator(f'article h2 a[href="{name}/index.html"]').inner_text()
        widths = page.eval_on_selector_all('article img', 'imgs => Promise.all(imgs.map('
                                           'i => i.decode().then(() => i.naturalWidth, () => 0)))')
        assert widths and min(widths) > 0, f'a figure of the results overview did not load: {widths}'
        repo = built[0].parent / 'repo'
        name = max(names, key=lambda n: max((ln.count('|') for f in (repo / 'results' / n[0]).glob('*.md')
                                             for ln in f.read_text().splitlines()), default=0))[0]  # widest table
        page.goto(served + f'results/{name}/index.html')
        assert page.evaluate(CLIPPED) == [], f'a table or code block is cut off on results/{name}'
        assert page.locator('article').bounding_box()['width'] > 0.75 * 1400, 'the content column is narrow'
        assert outside == [], f'assets asked from the network: {outside}'
        browser.close()
