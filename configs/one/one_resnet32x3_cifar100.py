# ONE with three branches, as the authors' ONE_ResNet (stem and stages 1-2
# shared, three stage-3 branches, one gate weight per branch). Recipe and
# deviations: those of ./one_resnet32x2_cifar100.py (the authors' code on
# FFL's schedule: Nesterov momentum where theirs has plain momentum).
_base_ = ['./one_resnet32x2_cifar100.py']
model = dict(num_branches=3)
