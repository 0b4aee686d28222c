#!/usr/bin/env bash
# Att-Res-SNN ImageNet throughput on one GPU, masnn-jax vs the official torch model (AMP): ≤ 8 minutes.
#   1. Att-Res-SNN-104, T=1, 224 px, batch 64: jax bf16 vs torch AMP (fp16), train + eval images/s, compile time,
#      memory_analysis and device peak                                    (≤ 270 s)
#   2. Att-Res-SNN-18 and -34, T=1, bf16/AMP, training only (quick rows)   (≤ 150 s)
# JSON lines go to $OUT/*.jsonl, logs to $OUT/*.log. Run from the repository root:
#   OUT=/tmp/out bash benchmarks/gpu_imagenet.sh
# Wheels carried in .whl/ (ml_collections, absl, ...) are installed into /tmp/site without their dependencies;
# jax / flax / torch are never installed (the machine's own are used).
set -u
OUT=${OUT:-/tmp/gpu_imagenet_out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  wheels=()
  for w in .whl/*.whl; do
    case "$(basename "$w")" in jax*|jaxlib*|flax*|torch*|nvidia*) ;; *) wheels+=("$w") ;; esac
  done
  [ ${#wheels[@]} -gt 0 ] && python -m pip install --quiet --no-index --no-deps --target /tmp/site "${wheels[@]}" \
    > "$OUT/pip.log" 2>&1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # torch shares the GPU in the same process
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python -c \
  "import jax, flax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)") \
  > "$OUT/env.txt" 2>&1
timeout -k 10 270 python benchmarks/imagenet.py --depths 104 --T 1 --batch 64 --size 224 --dtypes bfloat16 \
  --frameworks jax,torch --steps 10 > "$OUT/imagenet_104.jsonl" 2> "$OUT/imagenet_104.log"
echo "step 1 rc=$?" >> "$OUT/env.txt"
timeout -k 10 150 python benchmarks/imagenet.py --depths 18,34 --T 1 --batch 64 --size 224 --dtypes bfloat16 \
  --frameworks jax,torch --steps 5 --no-eval > "$OUT/imagenet_18_34.jsonl" 2> "$OUT/imagenet_18_34.log"
echo "step 2 rc=$?" >> "$OUT/env.txt"
cat "$OUT"/imagenet_*.jsonl
