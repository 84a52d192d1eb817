# ImageNet as MMPretrain's ResNet recipes load it (8 GPUs x 32 images,
# RandomResizedCrop 224 / ResizeEdge 256 + CenterCrop 224), evaluated for
# every output of a multi-branch model at once. _scope_='ffl_mm': see
# cifar100_bs128_ffl.py (inherited dicts keep MMPretrain's scope tag).
_base_ = ['mmpretrain::_base_/datasets/imagenet_bs32.py']

train_dataloader = dict(dataset=dict(_scope_='ffl_mm'))
val_dataloader = dict(dataset=dict(_scope_='ffl_mm'))
test_dataloader = val_dataloader
val_evaluator = dict(
    _scope_='ffl_mm', type='MultiBranchAccuracy', topk=(1, 5))
test_evaluator = val_evaluator
