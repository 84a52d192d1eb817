# The embedded default data set: scikit-learn's handwritten digits
# (1,347 train / 450 test images, 10 classes), served at 32x32x3.
# See ffl_mm.datasets.Digits for the fixed split.
dataset_type = 'Digits'
data_preprocessor = dict(
    num_classes=10,
    # statistics of the 32x32 train split, 0-255 scale (grey in 3 channels)
    mean=[77.77, 77.77, 77.77],
    std=[82.44, 82.44, 82.44],
    to_rgb=False)

train_pipeline = [
    # 2-pixel reflect padding, random 32x32 crop (no flip: digits are not
    # mirror-symmetric)
    dict(type='BorderPad', padding=2, padding_mode='reflect'),
    dict(type='RandomCrop', crop_size=32),
    dict(type='PackInputs'),
]
# The images are in memory; the loader reads a file only where a tool gives
# one (MMPretrain's vis_cam.py, which builds this pipeline in its own scope,
# hence the _scope_).
test_pipeline = [
    dict(type='LoadImageIfMissing', _scope_='ffl_mm'),
    dict(type='PackInputs'),
]

# The images live in memory and the pipeline is a crop: loading in the main
# process is cheapest (workers would take cores from training).
# persistent_workers=False because the tools (ours and MMPretrain's) turn it
# on by default and PyTorch refuses it without workers. The datasets carry
# _scope_='ffl_mm' because some of MMPretrain's tools (vis_tsne.py) build
# them without setting the config's scope.
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(_scope_='ffl_mm', type=dataset_type, split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(_scope_='ffl_mm', type=dataset_type, split='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
# every output of a multi-branch model (branches, ensemble, fused); the
# single-network baselines evaluate with MMPretrain's Accuracy
val_evaluator = dict(type='MultiBranchAccuracy', topk=(1, 5))

test_dataloader = val_dataloader
test_evaluator = val_evaluator

# --tta (ours and MMPretrain's tools/test.py): five views, the image and the
# image shifted by one pixel left, right, up and down (reflect padding, then
# the centre 32x32), as the training crops shift it; MMPretrain's default
# (a horizontal flip) would show mirrored digits, which training never does.
tta_pipeline = [
    dict(type='LoadImageIfMissing'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='BorderPad', padding=(1, 1, 1, 1)),
                dict(type='BorderPad', padding=(2, 1, 0, 1)),
                dict(type='BorderPad', padding=(0, 1, 2, 1)),
                dict(type='BorderPad', padding=(1, 2, 1, 0)),
                dict(type='BorderPad', padding=(1, 0, 1, 2)),
            ],
            [dict(type='CenterCrop', crop_size=32)],
            [dict(type='PackInputs')],
        ])
]
