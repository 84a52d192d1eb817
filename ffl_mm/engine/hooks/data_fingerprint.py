# Copyright (c) ffl_mm contributors.
"""What a run was trained on, recorded in each checkpoint, and what changed
since, for a resume."""
import hashlib
from typing import List, Optional, Tuple

import numpy as np


def data_fingerprint(dataset) -> Optional[dict]:
    """``{'num_samples', 'classes', 'samples_sha1'}`` of a data set: its
    length, its class names in label order (``metainfo['classes']``) and a
    SHA-1 of its sample list in order (each sample's ``img_path``, or its
    image bytes for data sets that hold images in memory such as CIFAR, and
    its label). An ``indices`` subset, added, removed or relabelled files
    all change the hash. None for a data set without ``get_data_info``.

    Reads every sample's annotation once (no image is decoded).
    """
    get = getattr(dataset, 'get_data_info', None)
    if get is None:
        return None
    digest = hashlib.sha1()
    for index in range(len(dataset)):
        info = get(index)
        source = info.get('img_path')
        if source is None and info.get('img') is not None:
            source = hashlib.sha1(
                np.ascontiguousarray(info['img']).tobytes()).hexdigest()
        digest.update(f'{source}\t{info.get("gt_label")}\n'.encode())
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    return dict(num_samples=len(dataset),
                classes=[str(c) for c in classes] if classes else None,
                samples_sha1=digest.hexdigest())


def data_changes(before: dict, now: dict) -> Tuple[List[str], List[str]]:
    """How the data set ``now`` differs from the one a checkpoint recorded.

    Returns:
        tuple: ``(class_changes, other_changes)``, lists of sentences;
        class changes mean that labels changed meaning.
    """
    classes, other = [], []
    old, new = before.get('classes'), now.get('classes')
    if old and new and old != new:
        renamed = [f'label {i}: {a!r} -> {b!r}'
                   for i, (a, b) in enumerate(zip(old, new)) if a != b]
        if len(old) != len(new):
            renamed.append(f'{len(old)} classes -> {len(new)}')
        classes.append('its classes changed (' + ', '.join(renamed[:5]) +
                       (', ...' if len(renamed) > 5 else '') + ')')
    count_before, count_now = before.get('num_samples'), now['num_samples']
    if count_before != count_now:
        other.append(f'it holds {count_now} samples, the checkpoint\'s '
                     f'run trained on {count_before}')
    elif before.get('samples_sha1') != now['samples_sha1']:
        other.append(f'it holds the same number of samples ({count_now}) '
                     'but another sample list (other files, order, labels '
                     'or indices)')
    return classes, other
