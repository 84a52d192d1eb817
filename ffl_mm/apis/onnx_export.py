# Copyright (c) ffl_mm contributors.
"""ONNX export of an exported student or of the fused model, checked with
ONNX Runtime against PyTorch.

The graph takes raw images and gives logits::

    images (B, 3, H, W) float32, RGB, values 0..255
    -> [the config's channel order] -> (x - mean) / std   (in the graph)
    -> the model                                          -> logits (B, K)

so that a user of the ``.onnx`` alone feeds decoded images (PIL, OpenCV
after ``cvtColor(BGR2RGB)``) resized as the config's test pipeline does;
``<name>.onnx.json`` beside it says so (input, size, mean, std, classes).
The batch axis is dynamic. Exported with ``torch.onnx.export(...,
dynamo=True)`` (PyTorch's current exporter, which needs ``onnxscript``) at
opset :data:`OPSET`.

Used by ``tools/export.py --onnx``; needs ``requirements/deploy.txt``.
"""
import json
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmpretrain.models.utils import ClsDataPreprocessor

from ..utils.private_api import normalizes

#: the ONNX opset written (the lowest the dynamo exporter writes)
OPSET = 18
#: largest |ONNX Runtime - PyTorch| logit accepted, float32, relative to
#: the logits' scale (their largest magnitude, at least 1): float sums in
#: another order differ in proportion to the values
TOLERANCE = 1e-4


class OnnxExportError(ValueError):
    """The model cannot be exported or its ``.onnx`` predicts otherwise."""


class ImagesToLogits(nn.Module):
    """Raw RGB images to the logits of one output of ``model``.

    Args:
        model (nn.Module): An MMPretrain ``ImageClassifier`` (an exported
            student) or a ``MultiBranchClassifier``, in evaluation mode.
        output (str, optional): For a ``MultiBranchClassifier``: the
            output to give (``'fused'``, ``'branch0'``, ...); None: all of
            them, concatenated in the model's order of outputs
            (``(B, n·K)``, used to time the whole model).
    """

    def __init__(self, model: nn.Module, output: Optional[str] = None):
        super().__init__()
        self.model = model
        self.output = output
        pre = model.data_preprocessor
        # the model sees BGR input converted when to_rgb is set: RGB in,
        # so the graph flips only for a model trained on BGR
        self.flip = not getattr(pre, 'to_rgb', False)
        normalize = isinstance(pre, ClsDataPreprocessor) and normalizes(pre)
        mean = pre.mean if normalize else torch.zeros(3, 1, 1)
        std = pre.std if normalize else torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.detach().clone().view(1, -1, 1, 1))
        self.register_buffer('std', std.detach().clone().view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images (Tensor): ``(B, 3, H, W)`` float, RGB, 0..255.

        Returns:
            Tensor: ``(B, K)`` logits.
        """
        x = images.flip(1) if self.flip else images
        x = (x - self.mean) / self.std
        out = self.model(x, mode='tensor')
        if not isinstance(out, dict):
            return out
        if self.output is not None:
            return out[self.output]
        return torch.cat(list(out.values()), dim=1)


def export_onnx(module: nn.Module, example: torch.Tensor,
                path: str) -> None:
    """Write ``module`` (images to logits) to ``path`` with a dynamic batch
    axis.

    Raises:
        OnnxExportError: The exporter failed; the message names the
            module that calls the operator without an ONNX mapping (see
            :func:`module_of_failed_op`) and the exporter's summary.
    """
    try:
        _export(module, (example, ), path)
    except Exception as err:  # the exporter raises many kinds
        where = module_of_failed_op(module, example, err)
        raise OnnxExportError(
            f'cannot export to ONNX (opset {OPSET}): '
            + (f'{where[0]} ({where[1]}) does not export: ' if where else '')
            + f'{type(err).__name__}: {_first_line(err)}') from err


#: protobuf's limit on one message: a graph whose weights exceed it keeps
#: them in ``<path>.data`` beside it (ONNX's external data), with a margin
#: for the graph itself.
SELF_CONTAINED_BYTES = 2**31 - 2**27


def onnx_files(path: str, module: nn.Module) -> List[str]:
    """The files :func:`export_onnx` writes for ``module`` at ``path``:
    the ``.onnx`` alone when its weights fit one protobuf message, else
    with ``<path>.data`` (both must be copied together)."""
    return [path] if _fits(module) else [path, path + '.data']


def _fits(module: nn.Module) -> bool:
    size = sum(t.numel() * t.element_size()
               for t in list(module.parameters()) + list(module.buffers()))
    return size < SELF_CONTAINED_BYTES


def _export(module: nn.Module, args: Tuple, path: str) -> None:
    import warnings
    batch = torch.export.Dim('batch', min=1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(
            module,
            args,
            path,
            input_names=['images'] if len(args) == 1 else None,
            output_names=['logits'] if len(args) == 1 else None,
            # one spec per positional input: the batch axis dynamic
            dynamic_shapes=tuple({0: batch} for _ in args),
            opset_version=OPSET,
            dynamo=True,
            external_data=not _fits(module),
            verbose=False)


def _first_line(err: Exception) -> str:
    """The line of an error that says what failed: for the exporter's
    long report, the first line of its exception summary (e.g. ``No ONNX
    function found for <OpOverload(op='aten.cummax', ...)>``)."""
    import re
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(err))
    if '## Exception summary' in text:
        text = text.split('## Exception summary', 1)[1]
    lines = [line.strip() for line in text.strip().splitlines()
             if line.strip()]
    if not lines:
        return type(err).__name__
    return re.sub(r"^<class '[\w.]+'>: ", '', lines[0])


def module_of_failed_op(module: nn.Module, example: torch.Tensor,
                        err: Exception) -> Optional[Tuple[str, str]]:
    """The module (name and class) that calls the operator the exporter
    names in ``err`` (``No ONNX function found for <OpOverload(op=
    'aten.cummax', overload='default')>``), from the module stack that
    ``torch.export`` records for each operator; None where the error names
    no operator or the operator is not found."""
    import re
    found = re.search(r"op='([\w.]+)', overload='(\w+)'", str(err))
    if not found:
        return None
    target = '.'.join(found.groups())
    try:
        program = torch.export.export(module, (example, ))
    except Exception:
        return None
    for node in program.graph.nodes:
        stack = node.meta.get('nn_module_stack') if \
            str(node.target) == target else None
        if stack:
            path, cls = list(stack.values())[-1]
            return path or '(the model)', str(cls).rsplit('.', 1)[-1]
    return None


def onnx_logits(path: str, images: torch.Tensor) -> np.ndarray:
    """Run the ``.onnx`` at ``path`` with ONNX Runtime (CPU) on
    ``images`` ``(B, 3, H, W)`` float32 RGB 0..255."""
    import onnxruntime as ort
    session = ort.InferenceSession(path,
                                   providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return session.run(None, {name: images.numpy().astype(np.float32)})[0]


def reference_logits(module: ImagesToLogits,
                     loader_images: torch.Tensor) -> torch.Tensor:
    """PyTorch's logits of the wrapped model on images as the config's
    data loader gives them (uint8, the loader's channel order), through
    the model's own data preprocessor: what the ``.onnx`` must match."""
    model = module.model
    with torch.no_grad():
        inputs = model.data_preprocessor(
            dict(inputs=loader_images), False)['inputs']
        out = model(inputs, mode='tensor')
    if isinstance(out, dict):
        out = out[module.output] if module.output is not None else \
            torch.cat(list(out.values()), dim=1)
    return out


def graph_input(loader_images: torch.Tensor) -> torch.Tensor:
    """The ``.onnx`` input for images as MMPretrain's loaders give them
    (BGR, as OpenCV decodes): RGB float32."""
    return loader_images.flip(1).float()


def check_onnx(path: str, loader_images: torch.Tensor,
               expected: torch.Tensor,
               tolerance: float = TOLERANCE) -> float:
    """Largest |ONNX Runtime - PyTorch| of the logits, which must stay
    within ``tolerance`` times their scale (largest |logit|, at least 1).

    Args:
        path (str): The ``.onnx``.
        loader_images (Tensor): ``(B, 3, H, W)`` uint8 images as the data
            loader gives them.
        expected (Tensor): PyTorch's logits on them
            (:func:`reference_logits`).

    Raises:
        OnnxExportError: Above ``tolerance`` (or NaN), naming the file.
    """
    got = onnx_logits(path, graph_input(loader_images))
    expected = expected.numpy()
    diff = float(np.abs(expected - got).max()) if got.shape == \
        expected.shape else float('inf')
    scale = max(1.0, float(np.abs(expected).max()))
    if not diff <= tolerance * scale:  # NaN compares false
        raise OnnxExportError(
            f'{path}: ONNX Runtime gives other logits than PyTorch (max '
            f'|diff| {diff:.2e} > {tolerance:g} x {scale:.3g}, the '
            f'largest |logit|; shapes {got.shape} and {expected.shape}); '
            'do not deploy this file.')
    return diff


def loader_images(cfg, num: int = 8, size: Optional[int] = None
                  ) -> Tuple[torch.Tensor, str]:
    """Up to ``num`` images of the config's test data set through its test
    pipeline, as its data loader gives them (``(n, 3, H, W)`` uint8), and
    where they came from; random images of the config's input size where
    the data set cannot be built (the reason is said)."""
    from mmengine.dataset import pseudo_collate

    from ..registry import DATASETS
    try:
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        batch = pseudo_collate([dataset[i]
                                for i in range(min(num, len(dataset)))])
        images = torch.stack(batch['inputs'])
        return images, (f'{len(images)} images of the test data set '
                        f'({type(dataset).__name__})')
    except Exception as err:  # absent data, another format
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (num, 3, size, size),
                               dtype=torch.uint8, generator=gen)
        return images, (f'{num} random {size}x{size} images (the test data '
                        f'set could not be read: {_first_line(err)})')


def input_spec(module: ImagesToLogits, size: Sequence[int],
               classes: Optional[Sequence[str]] = None) -> dict:
    """What ``<name>.onnx.json`` says about the graph's input and output."""
    spec = dict(
        input=dict(name='images', shape=['batch', 3, *size],
                   dtype='float32', channel_order='RGB',
                   value_range=[0, 255],
                   note='decoded images resized as the config\'s test '
                   'pipeline does; the normalisation is in the graph'),
        normalization=dict(
            mean=module.mean.flatten().tolist(),
            std=module.std.flatten().tolist(),
            order='BGR' if module.flip else 'RGB'),
        output=dict(name='logits', shape=['batch', 'num_classes'],
                    note='apply softmax for scores'),
        opset=OPSET)
    if classes:
        spec['classes'] = list(classes)
    return spec


def write_spec(path: str, spec: dict) -> None:
    with open(path, 'w') as f:
        json.dump(spec, f, indent=2)
