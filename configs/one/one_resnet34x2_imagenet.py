# ONE on ImageNet with MMPretrain's ResNet-34: the model, data and schedule
# of ffl/ffl_resnet34x2_imagenet.py (stem and stages 1-3 shared, stage 4 and
# the classifier per branch) with the gate on the stage-3 output instead of
# the fusion module.
#   tools/dist_train.sh configs/one/one_resnet34x2_imagenet.py 8
_base_ = ['../ffl/ffl_resnet34x2_imagenet.py']
model = dict(
    fusion_neck=None,
    fusion_head=None,
    ensemble_head=dict(type='GatedEnsembleHead', gate_input='trunk'),
    # FFL's ramp (the CIFAR 80 of 300 epochs scaled to 100 epochs)
    distill_loss=dict(distill_fused=False),
    test_cfg=dict(predict='ensemble'),
)
# no fusion module: no fusion weight decay
optim_wrapper = dict(paramwise_cfg=None)
