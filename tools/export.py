# Copyright (c) ffl_mm contributors.
"""Export a trained branch (student) or the fused model.

``--branch i`` writes branch i as a plain MMPretrain ``ImageClassifier``:
a config and a checkpoint that load with MMPretrain alone (no ffl_mm)
whenever the branch is made of MMPretrain components, ready for
``ImageClassificationInferencer``, MMPretrain's ``tools/test.py`` or a
fine-tuning config's ``init_cfg=dict(type='Pretrained', ...)``. A branch
built on ffl_mm's own backbones (``CIFARResNet``, ``WideResNet``) or
evaluated on its ``Digits`` data gets ``custom_imports=['ffl_mm']`` in the
config; the tool says so.

``--fused`` writes the multi-branch model predicting with the fused
classifier, without optimizer or training state; it needs ffl_mm.

After writing, the exported model is rebuilt from the written files and its
predictions on a random batch are compared with the ones of the
multi-branch model (max difference printed; an error above 1e-5).

``--onnx`` also writes ``<name>.onnx`` (raw RGB images 0..255 in, logits
out, the normalisation in the graph, a dynamic batch axis, opset 18) and
``<name>.onnx.json`` (input size, channel order, mean, std, classes),
runs it with ONNX Runtime on the config's test images (random ones where
the data set is absent, as said) and compares with PyTorch: an error
above 1e-4 of the logits' scale (their largest magnitude, at least 1) in
float32 (``ffl_mm/apis/onnx_export.py``). Needs
``requirements/deploy.txt`` (``make deploy-extras``).

Examples::

    python tools/export.py CONFIG CHECKPOINT --branch 0 --out exported/
    python tools/export.py CONFIG CHECKPOINT --fused --out exported/ --onnx
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner.checkpoint import (load_checkpoint,  # noqa: E402
                                        load_state_dict)
from ffl_mm.registry import MODELS  # noqa: E402

import ffl_mm  # noqa: F401,E402
import ffl_mm.engine.compat  # noqa: F401,E402  safe checkpoint reading
from ffl_mm.apis import export  # noqa: E402
from ffl_mm.apis.model_cfg import input_size, runner_model_cfg  # noqa: E402
from ffl_mm.engine.atomic_backend import replace_together  # noqa: E402
from ffl_mm.engine.checkpoint_loader import (  # noqa: E402
    CheckpointLoadError)
from ffl_mm.tools_support.mmpretrain_tools import quiet_logger  # noqa: E402
from ffl_mm.utils.output_names import (  # noqa: E402
    FUSED, branch_index, branch_name)

TOLERANCE = 1e-5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a branch or the fused model of an FFL/MFEF run')
    parser.add_argument('config', help='the training config')
    parser.add_argument('checkpoint', help='a checkpoint of that config')
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument('--branch', type=int,
                       help='export branch i as a plain ImageClassifier')
    which.add_argument('--fused', action='store_true',
                       help='export the model predicting with the fused '
                       'classifier (needs ffl_mm)')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--name', help='file stem (default: <config>_'
                        'branch<i> or <config>_fused)')
    parser.add_argument('--no-verify', action='store_true',
                        help='skip the prediction comparison')
    parser.add_argument('--onnx', action='store_true',
                        help='also write <name>.onnx (images to logits, '
                        'opset 18, dynamic batch) and check it with ONNX '
                        'Runtime on the test images')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def load_model(cfg, checkpoint):
    """The multi-branch model with every weight of ``checkpoint`` (strict:
    missing or unexpected keys are an error) and the checkpoint's meta."""
    model = MODELS.build(runner_model_cfg(cfg))
    if not isinstance(model, export.MultiBranchClassifier):
        raise SystemExit(f'{type(model).__name__} is not a '
                         'MultiBranchClassifier: nothing to export.')
    try:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu',
                               strict=True)
    except CheckpointLoadError as error:  # unreadable: not a mismatch
        raise SystemExit(f'export: {error}') from None
    except RuntimeError as error:
        raise SystemExit(f'{checkpoint} does not match {cfg.filename}:\n'
                         f'{error}') from None
    return model.eval(), ckpt.get('meta', {})


def verify(cfg, source, exported_model, output):
    """Max |difference| of the scores on a random batch (eval mode)."""
    size = input_size(cfg)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (2, 3, size, size), generator=gen,
                           dtype=torch.uint8).float()
    source.eval()
    exported_model.eval()
    with torch.no_grad():
        expected = torch.stack([
            s.pred_score if output == FUSED else s.branch_scores[
                branch_index(output)]
            for s in source.predict(source.data_preprocessor(
                dict(inputs=inputs))['inputs'])
        ])
        got = torch.stack([
            s.pred_score for s in exported_model.predict(
                exported_model.data_preprocessor(
                    dict(inputs=inputs))['inputs'])
        ])
    return (expected - got).abs().max().item()


def main(argv=None):
    args = parse_args(argv)
    quiet_logger()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # as MMPretrain's tools: build in the config's scope, as a Runner would
    init_default_scope(cfg.get('default_scope', 'ffl_mm'))
    model, meta = load_model(cfg, args.checkpoint)
    stem = osp.splitext(osp.basename(args.config))[0]
    try:
        if args.fused:
            output = FUSED
            out_cfg, state = export.export_fused(cfg, model)
        else:
            output = branch_name(args.branch)
            out_cfg, state = export.export_branch(cfg, model, args.branch)
    except export.ExportError as error:
        raise SystemExit(f'export: {error}') from None
    name = args.name or f'{stem}_{output}'
    os.makedirs(args.out, exist_ok=True)
    # every file is written and checked in a folder beside the
    # destination, then moved into place together: a failed export leaves
    # an earlier one whole
    stage = tempfile.mkdtemp(prefix=f'.{name}.', suffix='.export',
                             dir=args.out)
    try:
        files, checks = write_export(args, cfg, model, meta, out_cfg, state,
                                     output, stage, name)
        try:
            replace_together([(osp.join(stage, f), osp.join(args.out, f))
                              for f in files])
        except OSError as error:
            raise SystemExit(
                f'export: cannot put the export into {args.out}: {error}. '
                'Nothing there was changed.') from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    cfg_path = osp.join(args.out, name + '.py')
    ckpt_path = osp.join(args.out, name + '.pth')
    print(f'Exported {output} of {args.config}:\n' + ''.join(
        f'  {ROLES.get(f[len(name):], "file:"):<12}{osp.join(args.out, f)}\n'
        for f in files).rstrip('\n'))
    onnx = [f for f in files if f.startswith(name + '.onnx')
            and not f.endswith('.json')]
    if len(onnx) > 1:
        print(f'  copy {" and ".join(onnx)} together: the graph reads its '
              'weights from the .data file')
    needs = export.ffl_mm_types(out_cfg)
    if args.fused:
        print('  needs ffl_mm (MultiBranchClassifier); the config imports '
              'it.')
    elif needs:
        print(f'  needs ffl_mm for {", ".join(needs)}; the config imports '
              'it (custom_imports).')
    else:
        print('  plain MMPretrain: loads without ffl_mm.')
    for line in checks:
        print(line)
    return cfg_path, ckpt_path


#: What each file of an export is, by the suffix after its name.
ROLES = {'.py': 'config:', '.pth': 'checkpoint:', '.onnx': 'onnx:',
         '.onnx.data': 'onnx data:', '.onnx.json': 'onnx input:'}


def write_export(args, cfg, model, meta, out_cfg, state, output, stage,
                 name):
    """Write and check every file of the export in ``stage``; return their
    names and the lines that report the checks."""
    cfg_path = osp.join(stage, name + '.py')
    ckpt_path = osp.join(stage, name + '.pth')
    Config(out_cfg).dump(cfg_path)
    torch.save(
        export.exported_checkpoint(state, meta, output, args.checkpoint),
        ckpt_path)
    files, checks = [name + '.py', name + '.pth'], []
    if not args.no_verify:
        exported_model = MODELS.build(Config.fromfile(cfg_path).model)
        load_state_dict(exported_model, state, strict=True)
        diff = verify(cfg, model, exported_model, output)
        if not diff <= TOLERANCE:  # NaN compares false
            raise SystemExit(f'export: the exported model predicts '
                             f'differently (max |diff| {diff:.2e} > '
                             f'{TOLERANCE:g}).')
        checks.append(f'  predictions match the multi-branch model: max '
                      f'|diff| {diff:.2e}')
    if args.onnx:
        exported_model = MODELS.build(Config.fromfile(cfg_path).model)
        load_state_dict(exported_model, state, strict=True)
        onnx_files, onnx_check = write_onnx(
            cfg, exported_model.eval(), osp.join(stage, name + '.onnx'),
            output, meta.get('dataset_meta') or {})
        files += onnx_files
        checks.append(onnx_check)
    return files, checks


def write_onnx(cfg, model, path, output, dataset_meta):
    """``--onnx``: write, describe and check the graph; return the names of
    the files written and the line that reports the check."""
    try:
        from ffl_mm.apis import onnx_export as ox
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise SystemExit(f'export --onnx needs {error.name}: install the '
                         'deployment requirements (make deploy-extras, or '
                         'pip install -r requirements/deploy.txt).') from None
    module = ox.ImagesToLogits(
        model, output if output == FUSED else None).eval()
    size = input_size(cfg)
    images, source = ox.loader_images(cfg, size=size)
    try:
        ox.export_onnx(module, ox.graph_input(images[:2]), path)
        diff = ox.check_onnx(path, images, ox.reference_logits(
            module, images))
    except ox.OnnxExportError as error:
        raise SystemExit(f'export: {error}') from None
    spec_path = path + '.json'
    ox.write_spec(spec_path, ox.input_spec(
        module, images.shape[2:], dataset_meta.get('classes')))
    check = (f'  onnx graph: opset {ox.OPSET}, dynamic batch; ONNX Runtime '
             f'matches PyTorch on {source}: max |diff| {diff:.2e} (tolerance '
             f'{ox.TOLERANCE:g} of the largest |logit|, at least 1)')
    return [osp.basename(f) for f in ox.onnx_files(path, module)] + [
        osp.basename(spec_path)], check


if __name__ == '__main__':
    main()
