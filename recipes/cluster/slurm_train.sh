#!/usr/bin/env bash
# SLURM: one `accelerate launch` per node through srun, rendezvous on the first node of the allocation.
#   sbatch --nodes 2 --gres gpu:4 recipes/cluster/slurm_train.sh recipes/configs/digits_cnn.toml
# GPUS_PER_NODE defaults to SLURM_GPUS_ON_NODE (1 without GPUs); extra arguments are config overrides.
#SBATCH --job-name=neurotrain
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
set -euo pipefail
CONFIG=${1:?usage: slurm_train.sh CONFIG [--section.key VALUE ...]}
shift
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
NODES=${SLURM_NNODES:?run under sbatch/salloc}
MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${MAIN_PORT:-29500}
# single quotes: SLURM_NODEID is each node's own, expanded by the shell srun starts there
srun --kill-on-bad-exit=1 bash -c 'exec .venv/bin/accelerate launch --multi_gpu \
    --num_machines '"$NODES"' --num_processes '"$((NODES * GPUS_PER_NODE))"' \
    --machine_rank "$SLURM_NODEID" --main_process_ip '"$MAIN_IP"' --main_process_port '"$PORT"' \
    --rdzv_backend static --same_network --mixed_precision no --dynamo_backend no \
    recipes/train.py "$@"' _ "$CONFIG" "$@"
