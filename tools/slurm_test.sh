#!/usr/bin/env bash
# Evaluation on a SLURM cluster, MMPretrain's interface (GPUS, GPUS_PER_NODE,
# CPUS_PER_TASK, SRUN_ARGS: see slurm_run.sh), MMEngine's slurm launcher.
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/slurm_run.sh" "$1" "$2" test.py "$3" "$4" \
    --launcher=slurm "${@:5}"
