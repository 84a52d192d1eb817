# MMPretrain's runtime defaults, plus what every ffl_mm config needs.
_base_ = ['mmpretrain::_base_/default_runtime.py']

# Registers ffl_mm's models, metrics, hooks and datasets into MMPretrain's
# registries and installs the safe checkpoint loader.
custom_imports = dict(imports=['ffl_mm'], allow_failed_imports=False)

default_hooks = dict(logger=dict(type='LoggerHook', interval=20))

# Exact resumes (every epoch's random streams depend on seed and epoch only),
# a stop, naming the term, at the first NaN/inf loss, and (distributed) BN
# statistics averaged over the ranks at every epoch end, before the
# checkpoint, so that every rank holds the same weights.
custom_hooks = [
    dict(type='EpochSeedHook'),
    dict(type='FiniteLossHook', interval=1),
    dict(type='SyncBuffersHook'),
]
