# MMPretrain's runtime defaults, plus what every ffl_mm config needs.
_base_ = ['mmpretrain::_base_/default_runtime.py']

# Bare type names are looked up in ffl_mm's registries, then MMPretrain's and
# MMEngine's (ffl_mm's are their children).
default_scope = 'ffl_mm'

# ffl_mm registers its models, metrics, hooks, datasets and transforms;
# ffl_mm.engine.compat makes MMEngine read local checkpoints through the safe
# loader (torch >= 2.6) and write them atomically. Any tool that reads this
# config (ours, MMPretrain's, mim) gets both; drop the second to keep
# MMEngine's own checkpoint reading and writing.
custom_imports = dict(
    imports=['ffl_mm', 'ffl_mm.engine.compat'], allow_failed_imports=False)

# SafeRunner: MMEngine's Runner that locks its work dir before it writes
# anything (a second live run there stops, naming the first) and continues
# a checkpoint saved mid-epoch (on SIGTERM) at the next batch. Every tool
# that builds the runner with RUNNERS.build(cfg) uses it: ffl_mm's and
# MMPretrain's train.py/test.py, dist_train.sh, mim.
runner_type = 'SafeRunner'

# SafeCheckpointHook: MMEngine's CheckpointHook (same arguments) that writes
# the new checkpoint before it removes the oldest kept one.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(_scope_='ffl_mm', type='SafeCheckpointHook', interval=1))

# A rank that dies or freezes ends a distributed run after 10 minutes
# without progress, not torch's default 30 (a collective waits that long
# for the missing rank). Raise it for steps that keep one rank busy longer.
env_cfg = dict(dist_cfg=dict(timeout=600))

# Exact resumes (every epoch's random streams depend on seed and epoch only),
# a stop, naming the term, at the first NaN/inf loss or prediction, empty
# data sets and labels the heads cannot predict refused before the first
# step (naming the data set, the label and num_classes), and (distributed) BN
# statistics averaged over the ranks at every epoch end, before the
# checkpoint, so that every rank holds the same weights; a resumed run with
# nothing left to train says so.
custom_hooks = [
    dict(type='EpochSeedHook'),
    dict(type='FiniteLossHook', interval=1),
    dict(type='DatasetCheckHook'),
    dict(type='SyncBuffersHook'),
    dict(type='ResumeCheckHook'),
]

# MMPretrain's visualiser, without the `_scope_` tag that inheriting through
# `mmpretrain::` adds (MMPretrain's browse_dataset.py passes the dict to
# UniversalVisualizer as keyword arguments).
visualizer = dict(
    _delete_=True,
    type='UniversalVisualizer',
    vis_backends=[dict(type='LocalVisBackend')])
