# ONE with three branches, as the authors' ONE_ResNet (stem and stages 1-2
# shared, three stage-3 branches, one gate weight per branch).
_base_ = ['./one_resnet32x2_cifar100.py']
model = dict(num_branches=3)
