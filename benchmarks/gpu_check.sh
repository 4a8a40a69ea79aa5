#!/usr/bin/env bash
# The device check for a lent GPU machine without TensorFlow: Keras on JAX.
# Carry .whl/ (keras, namex, optree wheels; see benchmarks/README.md).
# Writes its log and JSON results under $OUT (or ./gpu-results).
set -uo pipefail
OUT=${OUT:-gpu-results}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import keras, jax; print('keras', keras.__version__, 'jax', jax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
# 1. the whole pipeline on the JAX backend, no TensorFlow installed
timeout 240 python3 -m microrep demo --out /tmp/demo --epochs 3 --overwrite 2>&1 | tail -8 | tee "$OUT/demo.txt"
# 2. throughput at the paper's input size, float32 and bfloat16
timeout 300 python3 benchmarks/throughput.py --input-size 224 --batch-size ${TRAIN_BATCH:-128} \
    --embed-batch-size ${EMBED_BATCH:-1024} --steps ${STEPS:-30} --matmul-size 8192 \
    --json "$OUT/throughput.json" 2>&1 | grep -v -E "^\s*$" | tail -6 | tee "$OUT/throughput.txt"
