# Copyright (c) ffl_mm contributors.
"""What a student, the fused model and the whole multi-branch model cost
at inference: parameters, FLOPs, and latency in PyTorch and ONNX Runtime.

For a multi-branch config it builds the model (initialised; the cost does
not depend on the weights) and measures, on the config's input size:

* ``student``: branch 0 exported as a plain ``ImageClassifier``
  (``tools/export.py --branch 0``);
* ``fused``: the fused classifier's logits (all branches, the fusion
  module and the fused head; FFL/MFEF only);
* ``whole``: every output of the multi-branch model (each branch, the
  ensemble, the fused classifier).

Parameters: those the output needs (the whole model's less the heads it
does not use). FLOPs: MMEngine's ``get_model_complexity_info`` (fvcore's
counting: one multiply-add is one FLOP). Latency: median of ``--repeats``
runs after warm-up, PyTorch eager (``no_grad``) and ONNX Runtime on the
CPU (the ``.onnx`` of ``tools/export.py --onnx``), the two interleaved run
by run, for each batch size.

Example::

    python tools/analysis_tools/inference_cost.py \\
        configs/ffl/ffl_resnet32x2_cifar100.py --batch-sizes 1 32
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import tempfile
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import ffl_mm  # noqa: F401,E402
from ffl_mm.apis import export  # noqa: E402
from ffl_mm.apis import onnx_export as ox  # noqa: E402
from ffl_mm.apis.model_cfg import input_size, runner_model_cfg  # noqa: E402
from ffl_mm.tools_support.mmpretrain_tools import quiet_logger  # noqa: E402
from ffl_mm.utils.output_names import FUSED  # noqa: E402
from ffl_mm.registry import MODELS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Inference cost')
    parser.add_argument('config')
    parser.add_argument('--batch-sizes', type=int, nargs='+',
                        default=[1, 32])
    parser.add_argument('--repeats', type=int, default=10,
                        help='timed runs per batch size (median)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--json', help='write the results here')
    return parser.parse_args(argv)


def needed_params(model, output) -> int:
    """Parameters of the multi-branch ``model`` that ``output`` (None:
    every output) needs: all but the heads it does not use."""
    total = sum(p.numel() for p in model.parameters())
    if output is None:
        return total
    unused = list(model.heads)
    if getattr(model, 'ensemble_head', None) is not None:
        unused.append(model.ensemble_head)
    return total - sum(p.numel() for h in unused for p in h.parameters())


def flops(module, x) -> int:
    import logging

    from mmengine.analysis import get_model_complexity_info
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)  # its list of ops it does not count
    try:
        info = get_model_complexity_info(module, inputs=(x, ),
                                         show_table=False, show_arch=False)
    finally:
        logger.setLevel(level)
    return int(info['flops'])


def latencies(module, path, batch, repeats, warmup):
    """Median ms of PyTorch and ONNX Runtime, interleaved run by run."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options,
                                   providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    x = torch.rand(batch, 3, *module.size) * 255
    feed = {name: x.numpy()}
    times = dict(pytorch=[], onnxruntime=[])
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            module(x)
            mid = time.perf_counter()
            session.run(None, feed)
            end = time.perf_counter()
            if i >= warmup:
                times['pytorch'].append((mid - start) * 1e3)
                times['onnxruntime'].append((end - mid) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    args = parse_args(argv)
    quiet_logger()
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'ffl_mm'))
    size = input_size(cfg)
    torch.manual_seed(0)
    model = MODELS.build(runner_model_cfg(cfg))
    model.init_weights()
    model.eval()
    out_cfg, state = export.export_branch(cfg, model, 0)
    student = MODELS.build(out_cfg['model'])
    student.load_state_dict(state)
    variants = {'student': (ox.ImagesToLogits(student.eval()), None)}
    if getattr(model, 'with_fusion', False):
        variants['fused'] = (ox.ImagesToLogits(model, FUSED), FUSED)
    variants['whole'] = (ox.ImagesToLogits(model, None), None)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, output) in variants.items():
            module.eval().size = (size, size)
            x = torch.rand(1, 3, size, size) * 255
            path = osp.join(tmp, name + '.onnx')
            ox.export_onnx(module, x.expand(2, -1, -1, -1).contiguous(),
                           path)
            params = sum(p.numel() for p in student.parameters()) \
                if name == 'student' else needed_params(model, output)
            row = dict(params=params, flops=flops(module, x))
            for batch in args.batch_sizes:
                row[f'batch{batch}_ms'] = latencies(
                    module, path, batch, args.repeats, args.warmup)
            results[name] = row
            print(f'{name:8s} params {params / 1e6:7.3f} M  FLOPs '
                  f'{row["flops"] / 1e9:7.3f} G  ' + '  '.join(
                      f'b{b}: PyTorch {row[f"batch{b}_ms"]["pytorch"]:.2f} '
                      f'ms, ORT {row[f"batch{b}_ms"]["onnxruntime"]:.2f} ms'
                      for b in args.batch_sizes), flush=True)
    summary = dict(config=args.config, input_size=size,
                   torch_threads=torch.get_num_threads(),
                   torch=torch.__version__, variants=results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == '__main__':
    main()
