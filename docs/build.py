"""Build the documentation site: `python docs/build.py [OUT]` (default `_site/`; `make docs` runs it).

Nothing is executed: a notebook page shows the outputs committed in the notebook. The pages are staged in a
temporary folder and the navigation is generated from what the repository holds at build time, so notebooks that
are added or renumbered need no edit here:

- Home: `nbs/index.ipynb`, or `README.md` where there is none
- Library: `nbs/*.ipynb`; Experiments: `nbs/experiments/*.ipynb` (and a section for any other folder of `nbs/`)
- Results: one page per folder of `results/` (its tables, figures, executed notebooks), where `results/` exists
- Benchmarks: `bench/README.md`, where it exists
- API reference: one page per module of `mer_nb/`, from its docstrings (griffe reads the source: nothing is imported)

Relative links are pointed at the staged pages, and links to other files of the repository at its host; a link
to nothing is left as it is, for tests/test_docs.py to find.

The site reads offline: MathJax is copied in from the jupyter-server-mathjax package (a dev requirement) and each
notebook page loads it by a relative path; docs/site.css (extra_css in docs/mkdocs.yml) widens the content column
and keeps wide tables and long code lines scrollable. A library page opens with its prose, not with the notebook's
import cells (the leading code cells that only import and show nothing are left out).
"""
import ast
import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r'(\]\()([^)\s]+)(\))')  # the target of a Markdown link or image
FIGURES = ('.png', '.svg', '.jpg', '.jpeg', '.gif')
ORDER = {'.md': 0, **{s: 1 for s in FIGURES}, '.ipynb': 2}  # on a results page: tables, figures, notebooks, the rest


def files(folder, pattern='*'):
    """The files under `folder` that match `pattern`, sorted, without hidden folders and Jupyter's checkpoints."""
    return sorted(p for p in folder.rglob(pattern)
                  if not any(part.startswith('.') for part in p.relative_to(folder).parts))


def title(text, default):
    """The first level-1 heading of `text`, else `default`."""
    m = re.search(r'^#\s+(.+)$', text, re.M)
    return m.group(1).replace('`', '').strip() if m else default


def fix_links(text, src, dst, pages, blob, html=False):
    """Relative links of `text`, read from repository path `src` and staged at `dst`, pointed at their pages."""
    def fix(m):
        target = m.group(2)
        if re.match(r'[a-zA-Z][a-zA-Z0-9+.-]*:|#|/', target):  # external, anchor or absolute: as is
            return m.group(0)
        path, hash_, anchor = target.partition('#')
        repo = os.path.normpath(os.path.join(os.path.dirname(src), path))
        if repo in pages:
            new = os.path.relpath(pages[repo], os.path.dirname(dst) or '.')
            if html:  # a notebook's links are not rewritten by mkdocs
                new = re.sub(r'\.(ipynb|md)$', '.html', new)
        elif (ROOT / repo).exists():
            new = f'{blob}/{repo}'
        else:
            return m.group(0)
        return m.group(1) + new + hash_ + anchor + m.group(3)
    return LINK.sub(fix, text)


def only_imports(code):
    """Whether `code` is nothing but import statements (a notebook's setup, not its content)."""
    try:
        body = ast.parse(code).body
    except SyntaxError:  # IPython magics and the like
        return False
    return bool(body) and all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in body)


def stage_notebook(src, dst, docs, pages, blob):
    """Copy notebook `src` to `docs/dst` without nbdev's `#| hide` cells and `#|` directives, and without the
    import cells it opens with (the code cells before any other code that only import and show nothing); return
    its title."""
    nb = json.loads((ROOT / src).read_text())
    cells, opening = [], True
    for c in nb['cells']:
        text = ''.join(c['source'])
        if c['cell_type'] == 'code':
            if re.search(r'^#\|\s*hide\b', text, re.M):
                continue
            text = re.sub(r'^#\|.*(\n|$)', '', text, flags=re.M).strip('\n')
            if not text and not c.get('outputs'):
                continue
            if opening and not c.get('outputs') and only_imports(text):
                continue
            opening = False
        elif c['cell_type'] == 'markdown':
            text = fix_links(text, src, dst, pages, blob, html=True)
        cells.append({**c, 'source': text})
    (docs / dst).parent.mkdir(parents=True, exist_ok=True)
    (docs / dst).write_text(json.dumps({**nb, 'cells': cells}, indent=1))
    first = next((''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown'), '')
    return title(first, Path(src).stem)


def artefact_table(d):
    """The table of artefact folder `d`: the .md named after the folder or after run.json's 'artefact', else its
    first .md; None where it has none."""
    tables = sorted(d.glob('*.md'))
    names = [d.name]
    if (d / 'run.json').is_file():
        try:
            names.append(str(json.loads((d / 'run.json').read_text()).get('artefact', '')))
        except (ValueError, AttributeError):
            pass
    return next((d / f'{n}.md' for n in names if (d / f'{n}.md').is_file()), tables[0] if tables else None)


def headline(d, table):
    """The headline number of artefact folder `d`, as Markdown: its first comparison as the report module reads it
    (`mer_nb.report.artefact_comparisons`: composite UF1 under `last`, from its comparisons*.csv), else the first data
    row of its table."""
    from mer_nb.report import artefact_comparisons
    c = artefact_comparisons(d) if (d / 'run.json').is_file() else []
    if len(c):
        r = c.iloc[0]
        return (f"**{r['comparison (b vs a)']}**: composite UF1 {r['UF1 a']} (a), {r['UF1 b']} (b), b - a "
                f"{r['b - a [95%]']}, Holm p {r['Holm p']}; {r['verdict']}")
    if table is None:
        return ''
    lines = [ln.strip() for ln in table.read_text().splitlines() if ln.strip().startswith('|')]
    rows = [[c.strip() for c in ln.strip('|').split('|')] for ln in lines
            if not re.fullmatch(r'[|:\-\s]+', ln)]
    if len(rows) < 2:
        return ''
    return 'First row: ' + ' · '.join(f'{h} **{v}**' for h, v in zip(rows[0], rows[1]) if h and v)


def main_figure(d, names):
    """The figure of artefact folder `d` to show first: the one named after it (or after one of `names`),
    else the one with the shortest name; None where it has none."""
    figures = sorted((f for f in d.iterdir() if f.suffix.lower() in FIGURES), key=lambda f: (len(f.stem), f.name))
    return next((f for f in figures if f.stem in names), figures[0] if figures else None)


def stage_results(docs, pages, blob):
    """One page per folder of results/: its .md tables inlined, its figures shown, its notebooks as pages. The
    overview lists each artefact by its title, with its headline number and figure."""
    nav = []
    named = [artefact_title(d) for d in (ROOT / 'results').iterdir() if d.is_dir() and not d.name.startswith('.')]
    for d in [ROOT / 'results'] + [p for p in files(ROOT / 'results') if p.is_dir()]:
        rel = d.relative_to(ROOT).as_posix()
        table = None if rel == 'results' else artefact_table(d)
        heading = 'Results' if rel == 'results' else d.name
        own = rel == 'results' and (d / 'README.md').is_file()  # results/README.md: its own heading and findings
        if (table is not None and title(table.read_text(), None)) or own:  # the page's own heading names it
            body = ['---\nhide:\n  - toc\n---\n']  # wide tables: the column takes the table of contents' room
        else:
            body = [f'# {heading}\n']
        if rel == 'results' and not own:
            body.append('Every artefact of `results/`: its title, its headline number and its figure. '
                        'Its page holds its tables, figures and executed notebook.')
        notebooks = []
        (docs / rel).mkdir(parents=True, exist_ok=True)
        here = [f for f in d.iterdir() if not f.name.startswith('.')]
        for f in sorted(here, key=lambda f: (ORDER.get(f.suffix.lower(), 3), f.name)):
            frel = f.relative_to(ROOT).as_posix()
            if f.is_dir():
                if own and not any(b.startswith('## Every artefact') for b in body):
                    body.append('## Every artefact\n\nIts title, headline number and figure; its page holds its tables, figures '
                                'and executed notebook.')
                body.append(summary(f, named.count(artefact_title(f)) > 1))
            elif f.suffix == '.md':
                body.append(fix_links(f.read_text(), frel, f'{rel}/index.md', pages, blob))
            elif f.suffix.lower() in FIGURES:
                shutil.copy2(f, docs / frel)
                if f.name not in '\n'.join(body):  # not shown by a table's text already
                    body.append(f'![{f.stem}]({f.name})')
            elif f.suffix == '.ipynb':
                notebooks.append({stage_notebook(frel, frel, docs, pages, blob).split(':')[0]: frel})
                body.append(f'- executed notebook: [{f.name}]({f.name})')
            else:
                body.append(f'- [{f.name}]({blob}/{frel})')
        (docs / rel / 'index.md').write_text('\n\n'.join(body) + '\n')
        entry, name = f'{rel}/index.md', 'Overview' if rel == 'results' else rel[len('results/'):]
        nav.append({name: [entry] + notebooks if notebooks else entry})
    return nav


def artefact_title(d):
    """The title of artefact folder `d`: its table's first heading (the title its registry entry gives it,
    `mer_nb.experiments.ARTEFACTS`, with its configuration), else the registered title, else the folder's name."""
    table = artefact_table(d)
    if table: return title(table.read_text(), d.name)
    try:
        from mer_nb.experiments import load_artefacts
        art = load_artefacts().get(json.loads((d / 'run.json').read_text()).get('artefact', ''))
        return art.title if art else d.name
    except (OSError, ValueError):
        return d.name


def summary(d, shared):
    """The overview's section for artefact folder `d`: its title (linking its page; with the folder's name where
    another artefact has the same title, `shared`), its headline number and its figure."""
    table = artefact_table(d)
    name = artefact_title(d) + (f' ({d.name})' if shared else '')
    parts = [f'## [{name}]({d.name}/index.md)']
    if not table and not any(d.iterdir()):
        return parts[0]
    line = headline(d, table)
    if line:
        parts.append(line)
    figure = main_figure(d, {d.name, table.stem if table else d.name})
    if figure is not None:
        parts.append(f'[![{figure.stem}]({d.name}/{figure.name}){{ .result-figure }}]({d.name}/index.md)')
    return '\n\n'.join(parts)


def course(nbs):
    """{notebook file name: its chapter(s), 'N. title'} of the learning path, in order: the rows of the table under
    '## The course' in the landing page (nbs/index.ipynb), so that the path is declared once and the navigation follows it."""
    index = nbs / 'index.ipynb'
    if not index.exists(): return {}
    text = ''.join(''.join(c['source']) for c in json.loads(index.read_text())['cells'] if c['cell_type'] == 'markdown')
    m = re.search(r'^## The course\b(.*?)(?=^## |\Z)', text, re.M | re.S)
    rows = re.findall(r'^\|\s*(\d+)\s*\|\s*\[([^\]]+)\]\(([^)#]+\.ipynb)[^)]*\)', m.group(1), re.M) if m else []
    out = {}
    for n, chapter, f in rows:
        if not (nbs / f).is_file(): sys.exit(f'docs: nbs/index.ipynb: the course links {f}, which nbs/ does not hold')
        out[f] = f'{out[f]} · {n}. {chapter.split(":")[0]}' if f in out else f'{n}. {chapter}'   # a notebook two chapters read
    return out


def stage(docs):
    """Stage every page into `docs`; return the navigation."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'settings.ini')
    blob = f"{cfg['DEFAULT']['git_url']}/blob/{cfg['DEFAULT']['branch']}"
    nbs = ROOT / 'nbs'
    library = sorted(p for p in nbs.glob('*.ipynb') if p.stem != 'index')
    labels = course(nbs)                 # the learning path, in the landing page's order; the rest is the reference
    sections = {'Course': [nbs / n for n in labels], 'Reference': [p for p in library if p.name not in labels]}
    for d in sorted(p for p in nbs.iterdir() if p.is_dir() and not p.name.startswith(('.', '_'))):
        sections[d.name.replace('_', ' ').capitalize()] = files(d, '*.ipynb')
    home = 'index.ipynb' if (nbs / 'index.ipynb').exists() else 'index.md'
    # repository path -> staged path, for the links
    pages = {'nbs/index.ipynb' if home == 'index.ipynb' else 'README.md': home}
    pages.update({p.relative_to(ROOT).as_posix(): p.relative_to(nbs).as_posix() for g in sections.values() for p in g})
    for f in (f for f in files(nbs) if f.suffix.lower() in FIGURES):  # images the notebooks show
        pages[f.relative_to(ROOT).as_posix()] = f.relative_to(nbs).as_posix()
        (docs / f.relative_to(nbs)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, docs / f.relative_to(nbs))
    if (ROOT / 'bench/README.md').exists():
        pages['bench/README.md'] = 'benchmarks.md'
    if (ROOT / 'results').is_dir():
        for p in files(ROOT / 'results'):  # a folder and its .md tables make its page; the rest is copied
            rel = p.relative_to(ROOT).as_posix()
            folder = rel if p.is_dir() else os.path.dirname(rel) if p.suffix == '.md' else None
            pages[rel] = f'{folder}/index.md' if folder else rel
        pages['results'] = 'results/index.md'

    if home == 'index.ipynb':
        stage_notebook('nbs/index.ipynb', home, docs, pages, blob)
    else:
        (docs / home).write_text(fix_links((ROOT / 'README.md').read_text(), 'README.md', home, pages, blob))
    nav = [{'Home': home}]
    for name, group in sections.items():
        items = []
        for p in group:
            src = p.relative_to(ROOT).as_posix()
            heading = stage_notebook(src, pages[src], docs, pages, blob)
            label = labels.get(p.name) if name == 'Course' else None
            items.append({label or heading.split(':')[0]: pages[src]})  # 'Table 1: comparison with ...' -> 'Table 1'
        if items:
            nav.append({name: items})
    if (ROOT / 'results').is_dir():
        nav.append({'Results': stage_results(docs, pages, blob)})
    if 'bench/README.md' in pages:
        text = (ROOT / 'bench/README.md').read_text()
        (docs / 'benchmarks.md').write_text(fix_links(text, 'bench/README.md', 'benchmarks.md', pages, blob))
        nav.append({'Benchmarks': 'benchmarks.md'})
    api = []
    for mod in sorted(p.stem for p in (ROOT / 'mer_nb').glob('*.py') if not p.stem.startswith('_')):
        (docs / 'api').mkdir(exist_ok=True)
        (docs / f'api/{mod}.md').write_text(f'# mer_nb.{mod}\n\n::: mer_nb.{mod}\n')
        api.append({mod: f'api/{mod}.md'})
    nav.append({'API reference': api})
    return cfg['DEFAULT'], nav


def mathjax_folder():
    """MathJax 2.7 as the jupyter-server-mathjax package installs it (found without importing the package)."""
    spec = importlib.util.find_spec('jupyter_server_mathjax')
    folder = Path(next(iter(spec.submodule_search_locations))) / 'static' if spec else None
    if folder is None or not (folder / 'MathJax.js').is_file():
        sys.exit('docs: MathJax not found: `make setup` installs it (pip install jupyter-server-mathjax)')
    return folder


def local_mathjax(out, url):
    """Copy MathJax to where `url` (relative to the site's root) points, and point each page at it by a path
    relative to that page, so that the site typesets its equations offline, from a server or from disk."""
    path = url.split('?')[0]
    shutil.copytree(mathjax_folder(), out / os.path.dirname(path), dirs_exist_ok=True)
    for page in out.rglob('*.html'):
        text = page.read_text()
        if f'src="{url}"' in text:
            rel = os.path.relpath(out / path, page.parent).replace(os.sep, '/')
            page.write_text(text.replace(f'src="{url}"', f'src="{rel}{url[len(path):]}"'))


def main(out):
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / 'sitemap.xml').exists():
        sys.exit(f'{out} is neither empty nor a site built before: not overwriting it')
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / 'docs'
        docs.mkdir()
        settings, nav = stage(docs)
        config = yaml.safe_load((ROOT / 'docs/mkdocs.yml').read_text())
        for asset in config.get('extra_css', []) + config.get('extra_javascript', []):  # our own, from docs/
            (docs / asset).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / 'docs' / asset, docs / asset)
        config.update(site_name=settings['title'], site_description=settings['description'],
                      repo_url=settings['git_url'], copyright=f"Copyright {settings['copyright']}",
                      docs_dir=str(docs), site_dir=str(out), nav=nav)
        strings = next(p['mkdocstrings'] for p in config['plugins'] if isinstance(p, dict) and 'mkdocstrings' in p)
        strings['handlers']['python']['paths'] = [str(ROOT)]
        jupyter = next(p['mkdocs-jupyter'] for p in config['plugins'] if isinstance(p, dict) and 'mkdocs-jupyter' in p)
        mathjax = jupyter['custom_mathjax_url']
        if re.match(r'[a-zA-Z][a-zA-Z0-9+.-]*:|/', mathjax):
            sys.exit(f'docs/mkdocs.yml: custom_mathjax_url must be a path inside the site, not {mathjax}')
        (Path(tmp) / 'mkdocs.yml').write_text(yaml.safe_dump(config, sort_keys=False))
        subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '-q', '-f', str(Path(tmp) / 'mkdocs.yml')],
                       check=True, cwd=tmp, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    local_mathjax(out, mathjax)
    print(f'docs: {out}/index.html')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else ROOT / '_site')
