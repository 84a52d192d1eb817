# ONE on ImageNet with MMPretrain's ResNet-34: the data and schedule of
# ffl/ffl_resnet34x2_imagenet.py, its branches (../_base_/models/resnet34x2.py:
# stem and stages 1-3 shared, stage 4 and the classifier per branch) and a
# gate on the stage-3 output. Recipe: the authors' code's gate, T = 3 and
# ramp-up (scaled to 100 epochs); a reconstruction beyond that (their
# ImageNet recipe is not in their code): FFL's ImageNet schedule.
#   tools/dist_train.sh configs/one/one_resnet34x2_imagenet.py 8
_base_ = [
    '../_base_/models/resnet34x2.py',
    '../_base_/datasets/imagenet_bs32_ffl.py',
    '../_base_/schedules/imagenet_bs256_ffl.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='ONEClassifier',
    ensemble_head=dict(type='GatedEnsembleHead', gate_input='trunk'),
    # FFL's ramp (the CIFAR 80 of 300 epochs scaled to 100 epochs)
    distill_loss=dict(
        type='TeacherKDLoss', temperature=3.0, rampup=27),
    test_cfg=dict(predict='ensemble'),
)
