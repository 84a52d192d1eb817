# Copyright (c) ffl_mm contributors.
"""The package's layering rules, read from its source: another library's
private name only in ``ffl_mm/utils/private_api.py``, and each layer
importing only the layers below it."""
import ast
import glob
import os.path as osp

from conftest import REPO

PACKAGE = osp.join(REPO, 'ffl_mm')
COMPAT = osp.join('ffl_mm', 'utils', 'private_api.py')
#: NamedTuple's public API, underscored to keep clear of field names
NAMEDTUPLE = {'_replace', '_asdict', '_fields', '_make'}
#: what each layer may import from ffl_mm, besides itself
LAYERS = {
    'utils': set(),
    'registry': {'utils'},
    'version': set(),
    'datasets': {'registry', 'utils'},
    'evaluation': {'registry', 'utils'},
    'models': {'registry', 'utils'},
    'engine': {'registry', 'utils', 'datasets'},
    'apis': {'registry', 'utils', 'models', 'engine', 'datasets'},
    'tools_support': {'registry', 'utils', 'models', 'engine', 'datasets',
                      'apis'},
}


def _sources():
    for path in sorted(glob.glob(osp.join(PACKAGE, '**', '*.py'),
                                 recursive=True)):
        with open(path) as f:
            yield osp.relpath(path, REPO), ast.parse(f.read())


def _own_private_names():
    """Underscored names ffl_mm defines: functions, classes, attributes
    it assigns, module globals."""
    own = set()
    for _, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and \
                    isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and \
                    isinstance(node.ctx, ast.Store):
                own.add(node.id)
    return {n for n in own if n.startswith('_')}


def _is_super_call(node):
    return isinstance(node, ast.Call) and \
        isinstance(node.func, ast.Name) and node.func.id == 'super'


def test_other_libraries_private_names_only_in_the_compat_module():
    own = _own_private_names()
    found = []
    for path, tree in _sources():
        if path == COMPAT:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith('_') or name.startswith('__') or \
                    name in NAMEDTUPLE or name in own:
                continue
            if isinstance(node.value, ast.Name) and \
                    node.value.id in ('self', 'cls'):
                continue
            if _is_super_call(node.value):
                continue  # an override calling the method it overrides
            found.append(f'{path}:{node.lineno} .{name}')
        for node in ast.walk(tree):  # getattr(x, '_name', default)
            if isinstance(node, ast.Call) and \
                    isinstance(node.func, ast.Name) and \
                    node.func.id in ('getattr', 'hasattr', 'setattr') and \
                    len(node.args) >= 2 and \
                    isinstance(node.args[1], ast.Constant) and \
                    str(node.args[1].value).startswith('_') and \
                    not str(node.args[1].value).startswith('__') and \
                    node.args[1].value not in own:
                found.append(f'{path}:{node.lineno} '
                             f'{node.func.id}(..., {node.args[1].value!r})')
    assert found == [], 'private names outside ' + COMPAT


def test_the_compat_module_checks_what_libraries_set():
    from ffl_mm.utils import private_api
    assert all(private_api.check_instances().values()), \
        private_api.check_instances()


def _imports(path, tree):
    """The ffl_mm modules a module imports, as dotted names below
    ``ffl_mm``."""
    package = osp.dirname(path).replace(osp.sep, '.')
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module
                                          else []))
            else:
                module = node.module or ''
            names = [module] if node.module else \
                [f'{module}.{a.name}' for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n[len('ffl_mm.'):] for n in names
                  if n.startswith('ffl_mm.')]
    return found


def test_each_layer_imports_only_the_layers_below():
    """utils < registry < datasets, models < engine < apis <
    tools_support: a run imports nothing of the tools' helpers, the engine
    nothing of the classifiers (it reads what it needs from state dicts and
    configs)."""
    broken = []
    for path, tree in _sources():
        parts = path.replace(osp.sep, '/').split('/')
        if len(parts) < 2 or parts[1] == '__init__.py':
            continue
        layer = parts[1][:-3] if parts[1].endswith('.py') else parts[1]
        allowed = LAYERS.get(layer)
        if allowed is None:
            broken.append(f'{path}: layer {layer} has no rule')
            continue
        for module in _imports(path, tree):
            if module.split('.')[0] == layer:
                continue
            if not any(module == a or module.startswith(a + '.')
                       for a in allowed):
                broken.append(f'{path} imports ffl_mm.{module}')
    assert broken == []


def test_no_package_module_grows_past_400_lines():
    """A new method or capability is a component in its own file: no
    module of the package grows past 400 lines."""
    long = []
    for path, _ in _sources():
        with open(osp.join(REPO, path)) as f:
            lines = sum(1 for _ in f)
        if lines > 400:
            long.append(f'{path}: {lines} lines')
    assert long == []
