#!/usr/bin/env bash
# The device check for a lent GPU machine without TensorFlow: Keras on JAX.
# Carry .whl/ (keras, namex, optree wheels; see benchmarks/README.md).
# Writes its logs and JSON results under $OUT (or ./gpu-results); at most 8 minutes (the timeouts below).
#   DEMO=1            also run the end-to-end demo (up to 3 more minutes)
#   AUTOBATCH=1       also run `microrep train --batch-size auto` fine-tuning at 224 px for one
#                     epoch (up to 4 more minutes; each batch tried compiles the step once):
#                     which batch fits, and the rate it trains at
#   FLOAT32=1         also time float32 (the product's default precision)
#   VARIANTS=...      step variants to time (benchmarks/variants.py)
#   PROFILE=...       variants to profile by kind of work (benchmarks/profile_step.py)
#   SIZE, TRAIN_BATCH, EMBED_BATCH, STEPS, MATMUL, ARCHIVE_IMAGES: sizes (a CPU smoke test:
#   INSTALL=0 SIZE=64 TRAIN_BATCH=4 EMBED_BATCH=8 STEPS=2 MATMUL=512 ARCHIVE_IMAGES=24 bash benchmarks/gpu_check.sh)
set -uo pipefail
OUT=${OUT:-gpu-results}; mkdir -p "$OUT"
if [ "${INSTALL:-1}" = 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt" \
    || echo "no nvidia-smi: not an NVIDIA machine" | tee "$OUT/device.txt"
python3 -c "import keras, jax; print('keras', keras.__version__, 'jax', jax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
# 1. the whole pipeline on the JAX backend, no TensorFlow installed
if [ "${DEMO:-0}" = 1 ]; then
  timeout 180 python3 -m microrep demo --out /tmp/demo --epochs 3 --overwrite > "$OUT/demo.txt" 2>&1
  tail -6 "$OUT/demo.txt"
fi
# 2. throughput at the paper's input size: the product (reshape/merged), the step before it
#    (max/twice) and each change alone,
#    plus training fed by the product's own pair pipeline (PyDataset, 4 threads)
PRECISION=mixed; [ "${FLOAT32:-0}" = 1 ] && PRECISION=float32,mixed
timeout 300 python3 benchmarks/throughput.py --input-size ${SIZE:-224} --batch-size ${TRAIN_BATCH:-128} \
    --embed-batch-size ${EMBED_BATCH:-1024} --steps ${STEPS:-30} --matmul-size ${MATMUL:-8192} \
    --precision $PRECISION --variants ${VARIANTS:-max/twice,reshape/twice,max/merged,reshape/merged} \
    --pipeline-steps ${STEPS:-30} --workers 4 --json "$OUT/throughput.json" > "$OUT/throughput.txt" 2>&1
grep -v -E '^\s*$|^\{' "$OUT/throughput.txt" | tail -12
# 3. embedding a PNG archive from disk: does reading keep the GPU waiting?
timeout 90 python3 benchmarks/embed_archive.py --input-size ${SIZE:-224} --mixed \
    --images ${ARCHIVE_IMAGES:-1024} --json "$OUT/embed_archive.json" > "$OUT/embed_archive.txt" 2>&1
tail -3 "$OUT/embed_archive.txt"
# 4. where a bfloat16 training step spends its time, by kind of work
for variant in ${PROFILE:-reshape/merged}; do
  name=profile_${variant//\//_}
  timeout 90 python3 benchmarks/profile_step.py --input-size ${SIZE:-224} --batch-size ${TRAIN_BATCH:-128} \
      --mixed --variant "$variant" --json "$OUT/$name.json" > "$OUT/$name.txt" 2>&1
  grep -v -E '^\s*$' "$OUT/$name.txt" | tail -14
done
# 5. `--batch-size auto`: the batch chosen on this accelerator and one epoch at it
if [ "${AUTOBATCH:-0}" = 1 ]; then
  timeout 240 python3 -m microrep train --data synthetic --data-dir /tmp/autobatch-data \
      --synthetic-image-size 256 --train-base --weights none --batch-size auto \
      --input-size ${SIZE:-224} --mixed-precision --epochs 1 --pairs-per-epoch ${AUTOBATCH_PAIRS:-4096} \
      --feature-cache "" --out /tmp/autobatch-run --overwrite > "$OUT/autobatch.txt" 2>&1
  grep -E "batch size auto|trained|s/step|error" "$OUT/autobatch.txt" | tail -4
fi
