# CIFAR-10 with the settings of cifar100_bs128_ffl.py (FFL normalises both
# data sets with the same statistics).
_base_ = ['./cifar100_bs128_ffl.py']

dataset_type = 'CIFAR10'
data_preprocessor = dict(num_classes=10)
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root='data/cifar10'))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root='data/cifar10'))
test_dataloader = val_dataloader
