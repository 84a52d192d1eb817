# Baseline of ffl/ffl_resnet34x2_imagenet.py: MMPretrain's own ResNet-34
# recipe, unchanged, run through ffl_mm's tools.
_base_ = ['mmpretrain::resnet/resnet34_8xb32_in1k.py']
custom_imports = dict(
    imports=['ffl_mm', 'ffl_mm.engine.compat'], allow_failed_imports=False)
