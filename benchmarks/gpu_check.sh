#!/usr/bin/env bash
# The GPU check behind BENCHMARKS.md's GPU section: run on a machine with one NVIDIA GPU whose python3 has jax[cuda]
# and torch (CUDA). Wheels the image lacks (spikingjelly, loguru, ml_collections, flax 0.12.8) can be put in .whl/.
# Writes JSON lines to $OUT (default ./gpu_results). Each step is time-boxed so the whole script ends in < 9 min.
set -u
OUT=${OUT:-gpu_results}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, flax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
timeout 60 python3 benchmarks/peak.py --quick > "$OUT/peak.jsonl" 2> "$OUT/peak.err"; echo "peak rc=$?"
timeout 170 python3 benchmarks/vs_spikingjelly.py --T 16 --batch 16 --steps 10 --reps 2 > "$OUT/vs_T16.jsonl" 2> "$OUT/vs_T16.err"; echo "vs16 rc=$?"
timeout 150 python3 benchmarks/vs_spikingjelly.py --T 60 --batch 16 --steps 5 --reps 1 > "$OUT/vs_T60.jsonl" 2> "$OUT/vs_T60.err"; echo "vs60 rc=$?"
timeout 80 python3 benchmarks/vs_spikingjelly.py --T 60 --batch 16 --steps 5 --reps 1 --dtype bfloat16 --frameworks jax > "$OUT/vs_T60_bf16.jsonl" 2> "$OUT/vs_T60_bf16.err"; echo "bf16 rc=$?"
timeout 60 python3 benchmarks/scaling.py --quick > "$OUT/scaling.jsonl" 2> "$OUT/scaling.err"; echo "scaling rc=$?"
tail -n 3 "$OUT"/*.err
cat "$OUT"/*.jsonl
