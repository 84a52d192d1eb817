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


def _test_modules():
    return sorted(glob.glob(osp.join(REPO, 'tests', '**', 'test_*.py'),
                            recursive=True))


def test_the_lab_is_reached_through_its_helper_only():
    """The analysis tools' lab is loaded by ``tests/helpers/lab.py`` from
    its folder: no test module imports ``ffl_mm_analysis`` itself or puts
    a tools folder on ``sys.path``."""
    found = []
    for path in _test_modules() + [osp.join(REPO, 'tests', 'conftest.py')]:
        text = open(path, encoding='utf-8').read()
        if any(m.split('.')[0] == 'ffl_mm_analysis'
               for m in _imported_modules(path)):
            found.append(f'{osp.relpath(path, REPO)}: imports the lab')
        if path != __file__ and 'sys.path.insert' in text and \
                'analysis_tools' in text:
            found.append(f'{osp.relpath(path, REPO)}: sys.path')
    assert not found, found


def test_one_test_file_per_method_class():
    """Each registered method class has its own test file in
    ``tests/test_models/test_classifiers/`` (``FFLClassifier`` ->
    ``test_ffl.py``), as MMPretrain lays out its classifiers' tests."""
    import re

    from helpers.conformance import method_classes
    folder = osp.join(REPO, 'tests', 'test_models', 'test_classifiers')
    def snake(name):
        name = re.sub(r'Classifier$', '', name)
        return re.sub(r'(?<=[a-z])(?=[A-Z])', '_', name).lower()

    expected = {f'test_{snake(name)}.py'
                for name in method_classes() + ['MultiBranchClassifier']}
    missing = sorted(f for f in expected
                     if not osp.isfile(osp.join(folder, f)))
    assert not missing, missing
