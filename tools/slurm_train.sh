#!/usr/bin/env bash
# Training on a SLURM cluster, MMPretrain's interface (GPUS, GPUS_PER_NODE,
# CPUS_PER_TASK, SRUN_ARGS: see slurm_run.sh), MMEngine's slurm launcher.
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
#
# Pre-emption and time limits: SLURM sends SIGTERM (scancel, pre-emption),
# or the signal --signal names ahead of the limit, before SIGKILL. Each
# rank saves <WORK_DIR>/epoch_E_iter_I.pth after its current iteration and
# the job ends by the signal (docs/reliability.md). To continue on its own,
# submit with sbatch --requeue and --signal=B:TERM@120 (or
# SRUN_ARGS="--signal=TERM@120" for srun alone), keep KillWait above one
# iteration plus a save, and always pass --resume: a requeued job then
# continues at the next batch (bit-identical), and a first start, with no
# checkpoint yet, starts from scratch.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/slurm_run.sh" "$1" "$2" train.py "$3" \
    --work-dir="$4" --launcher=slurm "${@:5}"
