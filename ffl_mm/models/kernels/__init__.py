# Copyright (c) ffl_mm contributors.
"""Hand-written autograd for MFEF's chain and the fusion convolutions:
forward and backward passes that keep fewer activations than the plain
modules (figures and the conditions under which each runs:
docs/benchmarks.md). The necks call them; nothing else should."""
from .recompute import buffers_kept, recompute_in_backward

__all__ = ['buffers_kept', 'recompute_in_backward']
