# CIFAR-100 as FFL trains on it: MMPretrain's CIFAR-100 settings (the
# paper's normalisation, 129.3/124.1/112.4 and 68.2/65.4/70.4), batch 128,
# and the authors' augmentation in their order: 4-pixel reflect padding,
# horizontal flip, random 32x32 crop. (MMPretrain's RandomCrop would pad
# with zeros whatever its padding_mode, hence BorderPad.) The tools, ours
# and MMPretrain's, add default_collate, pin_memory and persistent_workers.
_base_ = ['mmpretrain::_base_/datasets/cifar100_bs16.py']

train_pipeline = [
    dict(type='BorderPad', padding=4, padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomCrop', crop_size=32),
    dict(type='PackInputs'),
]
# _scope_='ffl_mm': every typed dict inherited through `mmpretrain::` is
# tagged _scope_='mmpretrain', and the Runner builds it, with everything
# nested in it, in MMPretrain's registries only; ffl_mm's registries include
# MMPretrain's, so the data sets (BorderPad in the pipeline) and the
# evaluator (MultiBranchAccuracy) are built in ffl_mm's scope.
train_dataloader = dict(
    batch_size=128,
    num_workers=4,
    dataset=dict(_scope_='ffl_mm', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128, num_workers=4, dataset=dict(_scope_='ffl_mm'))
test_dataloader = val_dataloader
val_evaluator = dict(
    _scope_='ffl_mm', type='MultiBranchAccuracy', topk=(1, 5))
test_evaluator = val_evaluator
