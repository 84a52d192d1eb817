# KDCL (Guo et al., CVPR 2020) with two independent CIFAR ResNet-32
# students (./cifar-resnet32x2.py without the shared trunk), each on its
# own augmented view of the image (each config's MultiView pipeline and
# MultiViewClsDataPreprocessor), each distilled from the MinLogit teacher
# t_c = min_i (z_ic - z_iy) (the teacher detached, not trained).
# T = 3 and weight 1 without ramp-up, as FFL's KD (one recipe for every
# method here); teacher='naive' gives KDCL-Naive.
_base_ = ['./cifar-resnet32x2.py']
model = dict(
    type='KDCLClassifier',
    shared_stages=0,
    teacher='min_logit',
    distill_loss=dict(
        type='TeacherKDLoss', temperature=3.0, loss_weight=1.0, rampup=None),
    # the ensemble: the mean of the students' logits
    test_cfg=dict(predict='ensemble'),
)
