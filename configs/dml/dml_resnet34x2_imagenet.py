# DML on ImageNet with two independent MMPretrain ResNet-34 (a
# reconstruction: the paper has no ImageNet recipe): the data and schedule
# of ffl/ffl_resnet34x2_imagenet.py, the branches of
# ../_base_/models/resnet34x2.py without the shared trunk. Recipe: OKDDip's
# public DML code as the CIFAR config (T = 3, the networks updated together:
# the paper's one-by-one update also runs in the model's own train_step,
# which distributed training does not call), on FFL's ImageNet schedule.
#   tools/dist_train.sh configs/dml/dml_resnet34x2_imagenet.py 8
_base_ = [
    '../_base_/models/resnet34x2.py',
    '../_base_/datasets/imagenet_bs32_ffl.py',
    '../_base_/schedules/imagenet_bs256_ffl.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='DMLClassifier',
    shared_stages=0,
    distill_loss=dict(type='PeerKDLoss', temperature=3.0),
    branch_update='together',
    test_cfg=dict(predict='ensemble'),
)
