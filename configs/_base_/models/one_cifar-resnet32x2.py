# ONE (Lan, Zhu, Gong, NeurIPS 2018) with two CIFAR ResNet-32 branches
# (./cifar-resnet32x2.py: stem and stages 1-2 shared, stage 3 and the
# classifier per branch) and a gate on the shared stage-2 output. The
# gate weighs the branch logits into the ensemble teacher
# (GatedEnsembleHead: pooling, Linear with bias, BatchNorm1d, ReLU, softmax,
# as in the authors' code). Loss: the branches' and the ensemble's
# cross-entropy + T^2 KL(ensemble/T || branch/T) for each branch, T = 3, the
# ensemble fixed in the KL; the KL weight ramps up as
# exp(-5 (1 - min(e, 80)/80)^2) (the authors' cifar_one.py; the paper does
# not mention it: rampup=None turns it off).
_base_ = ['./cifar-resnet32x2.py']
model = dict(
    type='ONEClassifier',
    ensemble_head=dict(
        type='GatedEnsembleHead', gate_input='trunk',
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    distill_loss=dict(
        type='TeacherKDLoss', temperature=3.0, loss_weight=1.0, rampup=80),
    # the gated ensemble
    test_cfg=dict(predict='ensemble'),
)
