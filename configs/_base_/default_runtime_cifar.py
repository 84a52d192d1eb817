# ffl_mm's runtime for the 300-epoch CIFAR schedule: a checkpoint every 5
# epochs, the last three and the best (by the selected output's top-1) kept.
_base_ = ['./default_runtime.py']
default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=3, save_best='auto'))
