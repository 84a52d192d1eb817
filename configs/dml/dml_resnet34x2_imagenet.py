# DML on ImageNet with two independent MMPretrain ResNet-34 (a
# reconstruction: the paper has no ImageNet recipe): the model, data and
# schedule of ffl/ffl_resnet34x2_imagenet.py without the shared trunk and
# the fusion module. The networks are updated together
# (branch_update='together'): the one-by-one update of the paper runs in the
# model's own train_step, which distributed training does not call.
#   tools/dist_train.sh configs/dml/dml_resnet34x2_imagenet.py 8
_base_ = ['../ffl/ffl_resnet34x2_imagenet.py']
model = dict(
    shared_stages=0,
    fusion_neck=None,
    fusion_head=None,
    distill_loss=dict(_delete_=True, type='PeerKDLoss', temperature=1.0),
    branch_update='together',
    test_cfg=dict(predict='ensemble'),
)
# no fusion module: no fusion weight decay
optim_wrapper = dict(paramwise_cfg=None)
