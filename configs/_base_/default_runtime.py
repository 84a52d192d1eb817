# MMPretrain's runtime defaults, plus what every ffl_mm config needs.
_base_ = ['mmpretrain::_base_/default_runtime.py']

# Registers ffl_mm's models, metrics, hooks and datasets into MMPretrain's
# registries and installs the safe checkpoint loader.
custom_imports = dict(imports=['ffl_mm'], allow_failed_imports=False)

default_hooks = dict(logger=dict(type='LoggerHook', interval=20))
