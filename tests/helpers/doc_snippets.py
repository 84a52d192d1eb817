# Copyright (c) ffl_mm contributors.
"""The docs and the Python snippets they mark (``<!-- snippet: KIND -->``
before a python block), for the tests of the docs and of the configs."""
import glob
import os.path as osp
import re

import pytest

from conftest import REPO

DOCS = sorted([osp.join(REPO, 'README.md'),
               *glob.glob(osp.join(REPO, 'docs', '**', '*.md'),
                          recursive=True),
               *glob.glob(osp.join(REPO, 'configs', '*', 'README.md'))])
SNIPPET = re.compile(r'<!-- snippet: (\w+) -->\n```python\n(.*?)```', re.S)


def _snippets():
    found = []
    for path in DOCS:
        text = open(path, encoding='utf-8').read()
        for i, (kind, code) in enumerate(SNIPPET.findall(text)):
            found.append(pytest.param(
                kind, code, id=f'{osp.relpath(path, REPO)}#{i}-{kind}'))
    return found


SNIPPETS = _snippets()
