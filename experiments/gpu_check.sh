#!/usr/bin/env bash
# The benchmark on a GPU in under five minutes; paste its table into the README's
# per-device table with the date and the device name it prints.
#   bash experiments/gpu_check.sh            (needs jax with CUDA: pip install "jax[cuda12]")
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
date -u +"%Y-%m-%d %H:%M UTC"
timeout 200 python experiments/benchmark.py --members=1,8,24 --sizes=64,128 --channels=1 \
    --steps=20 --epochs=2 --eval_images=4096 --torch=false
timeout 60 python experiments/benchmark.py --members=1,24 --sizes=64 --channels=1 \
    --steps=20 --epochs=2 --eval_images=4096 --torch=false --before=false \
    --compute_dtype=bfloat16
timeout 60 python experiments/entropy_benchmark.py --num=100000 --dims=16
