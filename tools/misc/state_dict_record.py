# Copyright (c) ffl_mm contributors.
"""Record the state-dict keys and shapes of shipped configs'
models in ``tests/data/state_dict_shapes.json`` (what
``tests/test_package.py`` holds every config to, so that checkpoints keep
loading).

By default it adds the configs that are not recorded yet (a new config)
and leaves every recorded one as it is; ``--update CONFIG ...`` rewrites
the named ones (a deliberate change of the checkpoint format, to be said in
the changelog); ``--check`` only reports. Configs no longer shipped leave
the record.

Example::

    python tools/misc/state_dict_record.py           # add new configs
    python tools/misc/state_dict_record.py --update configs/ffl/x.py
"""
import argparse
import glob
import json
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECORD = osp.join(REPO, 'tests', 'data', 'state_dict_shapes.json')


def shipped_configs():
    """Every config of ``configs/`` (not the bases), relative to the
    repository."""
    return sorted(
        osp.relpath(p, REPO).replace(osp.sep, '/')
        for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                           recursive=True) if '_base_' not in p)


def shapes(config):
    """``{key: shape}`` of the model the Runner builds from ``config``."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import ffl_mm  # noqa: F401
    from ffl_mm.apis.model_cfg import runner_model_cfg
    from ffl_mm.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, config))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope',
                                                      'ffl_mm')):
        model = MODELS.build(runner_model_cfg(cfg))
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--update', nargs='+', default=[], metavar='CONFIG',
                        help='rewrite the record of these configs')
    parser.add_argument('--check', action='store_true',
                        help='report what would change; write nothing')
    args = parser.parse_args(argv)
    with open(RECORD) as f:
        record = json.load(f)
    configs = shipped_configs()
    unknown = [c for c in args.update if c not in configs]
    if unknown:
        parser.error(f'not shipped configs: {unknown}')
    added = [c for c in configs if c not in record]
    removed = [c for c in record if c not in configs]
    for config in added + args.update:
        record[config] = shapes(config)
    for config in removed:
        del record[config]
    for verb, names in (('added', added), ('updated', args.update),
                        ('removed', removed)):
        for name in names:
            print(f'{verb}: {name}')
    if not (added or args.update or removed):
        print('the record matches the shipped configs')
    if args.check:
        return 1 if (added or removed) else 0
    with open(RECORD, 'w') as f:
        json.dump(dict(sorted(record.items())), f, indent=0, sort_keys=True)
        f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
