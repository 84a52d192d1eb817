# MMPretrain's standard ResNet ImageNet schedule (SGD lr 0.1 for batch 256,
# weight decay 1e-4, 100 epochs, lr x0.1 at 30/60/90), with ffl_mm's
# optimizer constructor: a paramwise custom key that matches no parameter
# is an error.
_base_ = ['mmpretrain::_base_/schedules/imagenet_bs256.py']
optim_wrapper = dict(constructor='CheckedOptimWrapperConstructor')
