# Copyright (c) ffl_mm contributors.
"""The test suite's own layout: helpers that several test modules share
live in ``tests/helpers/`` or ``conftest.py``, never in a test module that
another one imports (importing a test module runs its collection-time code
and ties the two files together)."""
import ast
import glob
import os.path as osp

from conftest import REPO


def _imported_modules(path):
    tree = ast.parse(open(path, encoding='utf-8').read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_test_module_imports_another():
    found = []
    for path in glob.glob(osp.join(REPO, 'tests', '**', '*.py'),
                          recursive=True):
        for module in _imported_modules(path):
            if any(part.startswith('test_') for part in module.split('.')):
                found.append(f'{osp.relpath(path, REPO)}: {module}')
    assert not found, found
