# A short CPU schedule for the digits data: 15 epochs of 22 iterations.
optim_wrapper = dict(
    # a paramwise custom key that matches no parameter is an error
    constructor='CheckedOptimWrapperConstructor',
    optimizer=dict(
        type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[10, 13], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=15, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
