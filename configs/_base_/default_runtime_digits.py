# ffl_mm's runtime for the 15-epoch digits schedule (22 iterations an
# epoch): two log records an epoch (MMPretrain's analyze_logs.py
# cal_train_time drops an epoch's first record), a checkpoint every 5
# epochs, the last two kept.
_base_ = ['./default_runtime.py']
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=5, max_keep_ckpts=2))
