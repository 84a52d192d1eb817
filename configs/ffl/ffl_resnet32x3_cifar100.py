# FFL-S with three CIFAR ResNet-32 branches (stem and stages 1-2 shared):
# each branch learns from the fused classifier of all three, the fused
# classifier from the mean of the three branch logits.
_base_ = ['./ffl_resnet32x2_cifar100.py']
model = dict(num_branches=3)
