"""Packaging for nbdev 2: every setting lives in settings.ini (edit it there, not here)."""
import shlex
from configparser import ConfigParser

import setuptools

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
for o in cfg_keys + 'lib_name user branch license status min_python audience language'.split():
    assert o in cfg, f'settings.ini: missing expected setting: {o}'

statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']

setuptools.setup(
    name=cfg['lib_name'],
    license='Apache Software License 2.0',
    classifiers=[
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
        'Programming Language :: Python :: 3',
    ],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['mer_nb', 'mer_nb.*']),
    # Package data: the experiment notebooks (`mer_nb/notebooks` is a link to nbs/experiments, so that `mer-nb reproduce`
    # finds them through importlib.resources in a checkout, an editable install and a wheel alike) and the Adam kernel's C source.
    package_data={'mer_nb': ['notebooks/*.ipynb', 'kernels/*.c']},
    include_package_data=True,
    install_requires=shlex.split(cfg.get('requirements', '')),
    extras_require={'dev': shlex.split(cfg.get('dev_requirements', ''))},
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d'],
    },
    **{o: cfg[o] for o in cfg_keys},
)
