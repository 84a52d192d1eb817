# FFL's CIFAR schedule: SGD with Nesterov momentum 0.9, lr 0.1, weight decay
# 1e-4, batch 128, 300 epochs, lr x0.1 at epochs 150 and 225. The FFL and
# MFEF configs add fusion_decay.py (1e-5 for the fusion module and fused
# classifier); the single networks train on this schedule as it is.
_base_ = ['mmpretrain::_base_/schedules/cifar10_bs128.py']

optim_wrapper = dict(
    # a paramwise custom key that matches no parameter is an error
    constructor='CheckedOptimWrapperConstructor',
    optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[150, 225], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=5)
auto_scale_lr = dict(base_batch_size=128)
