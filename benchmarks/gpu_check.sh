#!/usr/bin/env bash
# The GPU check behind BENCHMARKS.md's GPU section (issue 15): one NVIDIA GPU, python3 with jax[cuda] + its flax,
# optax, orbax-checkpoint, chex and a CUDA torch. Pure-Python wheels the image lacks (ml_collections + PyYAML + absl,
# spikingjelly + loguru) are carried in .whl/ and installed with --no-deps into /tmp/site, and only those whose module
# is missing (jax, jaxlib and flax are never installed from .whl/: keep the flax that matches the image's jax).
#
# Run from the repository root:   OUT=/some/dir bash benchmarks/gpu_check.sh
# Writes one file per step under $OUT (default ./gpu_results): <step>.jsonl (JSON lines), <step>.err, steps.txt
# (each step's exit code and seconds; 124 = timed out), gpu.txt (devices, versions), summary.txt.
# Fails soft: every step is time-boxed with `timeout` and a failing step does not stop the others; steps are skipped
# once the whole script would pass BUDGET seconds (default 450, so it ends within 8 minutes).
#
# Steps, most important first:
#   lif_kernel       the fused Pallas LIF (Triton) against the lax.scan on this GPU: spikes and gradients, several
#                    presets, f32 and bf16; then fwd+bwd time of both at the Gesture conv-1 shape (T 60, batch 64)
#   vs_T60_B64       Gesture TCSA T=60 batch 64, library defaults ('auto': batch_chunks 1, conv xla, neuron pallas)
#                    vs SpikingJelly (official-style Python loop) and SpikingJelly's fused multi-step LIFNode
#   vs_T60_B64_scan  the same JAX step with neuron_impl=scan
#   vs_T16_B16       T=16 batch 16: defaults vs SpikingJelly loop and fused LIF
#   vs_T60_B64_bf16  defaults in bfloat16 (fp32 parameters)
#   compile_T16      compile time: first compile, then a second process reading JAX's persistent cache
#   vs_T16_B16_scan  T=16 batch 16 with neuron_impl=scan
set -u
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
BUDGET=${BUDGET:-450}
START=$SECONDS
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

# --- wheels the image lacks (only the missing ones; never jax/jaxlib/flax) ---------------------------------------
SITE=${SITE:-/tmp/site}
if ls .whl/*.whl >/dev/null 2>&1; then
  need=()
  for w in .whl/*.whl; do
    dist=$(basename "$w"); dist=${dist%%-*}
    case "${dist,,}" in
      jax|jaxlib|flax|jax_cuda*|torch) continue ;;
      pyyaml) mod=yaml ;;
      absl_py) mod=absl ;;
      *) mod=${dist,,} ;;
    esac
    $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)" 2>/dev/null || need+=("$w")
  done
  if [ ${#need[@]} -gt 0 ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${need[@]}" \
      > "$OUT/pip.txt" 2>&1 || echo "pip install of ${need[*]} failed (see pip.txt)"
  fi
  echo "installed into $SITE: ${need[*]:-nothing}" | tee "$OUT/pip_installed.txt"
  export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

step() {  # step NAME LIMIT_SECONDS command...  -> $OUT/NAME.jsonl, $OUT/NAME.err, a line in steps.txt
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 25 ]; then echo "$name skipped (budget: ${left}s left)" | tee -a "$OUT/steps.txt"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" > "$OUT/$name.jsonl" 2> "$OUT/$name.err"
  echo "$name rc=$? limit=${limit}s took=$((SECONDS - t0))s" | tee -a "$OUT/steps.txt"
}

: > "$OUT/steps.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  timeout 60 $PY -c "import sys, jax, flax, torch; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
} | tee "$OUT/gpu.txt"

VS="$PY benchmarks/vs_spikingjelly.py --threads 0 --reps 1"

step lif_kernel 70 $PY - <<'EOF'
import json, time
import jax, jax.numpy as jnp
from masnn_jax.snn import neurons, pallas_lif, surrogate

def emit(**row): print(json.dumps(row), flush=True)

presets = {
    "masnn_official": neurons.masnn_official(),
    "att_res_snn": neurons.att_res_snn(),
    "sj_soft_atan": neurons.spikingjelly_lif(2.0, v_reset=None, v_threshold=0.5, surrogate=surrogate.atan(2.0)),
    "sj_hard_sigmoid_detach": neurons.spikingjelly_lif(1 / 0.7, decay_input=False, v_threshold=0.3, v_reset=0.0,
                                                       detach_reset=True, surrogate=surrogate.sigmoid(4.0)),
}
for name, p in presets.items():
    for dtype in (jnp.float32, jnp.bfloat16):
        for shape in ((16, 60, 8192), (3, 1, 37), (5, 16, 1000)):
            try:
                kx, kw = jax.random.split(jax.random.key(0))
                x = (0.6 * jax.random.normal(kx, shape) + 0.25).astype(dtype)
                w = jax.random.normal(kw, shape)

                def vg(impl):
                    f = lambda x: (neurons.lif(x, p, impl=impl).astype(jnp.float32) * w).sum()
                    return jax.jit(lambda x: (neurons.lif(x, p, impl=impl), jax.grad(f)(x)))(x)

                (s0, g0), (s1, g1) = vg("scan"), vg("pallas")
                g0, g1 = g0.astype(jnp.float32), g1.astype(jnp.float32)
                scale = float(jnp.abs(g0).max())
                emit(check="lif_pallas_vs_scan", preset=name, dtype=jnp.dtype(dtype).name, shape=shape,
                     firing_rate=float(s0.astype(jnp.float32).mean()),
                     spike_mismatch_fraction=float((s0 != s1).mean()),
                     grad_max_abs_err_rel=float(jnp.abs(g1 - g0).max()) / max(scale, 1e-30),
                     grad_frac_err_above_0p001_of_max=float((jnp.abs(g1 - g0) > 1e-3 * scale).mean()))
            except Exception as e:  # noqa: BLE001
                emit(check="lif_pallas_vs_scan", preset=name, dtype=jnp.dtype(dtype).name, shape=shape,
                     error=f"{type(e).__name__}: {str(e)[:1500]}")

# fwd+bwd time at the Gesture conv-1 shape: (B 64, T 60, 32*32*64 neurons)
p = neurons.masnn_official()
for dtype in (jnp.float32, jnp.bfloat16):
    x = (0.6 * jax.random.normal(jax.random.key(1), (64, 60, 32 * 32 * 64)) + 0.25).astype(dtype)
    for impl in ("scan", "pallas"):
        try:
            f = jax.jit(jax.value_and_grad(lambda x: neurons.lif(x, p, impl=impl).astype(jnp.float32).sum()))
            t0 = time.perf_counter(); c = f.lower(x).compile(); compile_s = time.perf_counter() - t0
            jax.block_until_ready(c(x))
            ts = []
            for _ in range(10):
                t0 = time.perf_counter(); jax.block_until_ready(c(x)); ts.append(time.perf_counter() - t0)
            ma = c.memory_analysis()
            emit(check="lif_fwd_bwd_time", impl=impl, dtype=jnp.dtype(dtype).name, shape=x.shape,
                 median_ms=1e3 * sorted(ts)[5], min_ms=1e3 * min(ts), compile_s=compile_s,
                 temp_mb=ma.temp_size_in_bytes / 2**20 if ma else None)
        except Exception as e:  # noqa: BLE001
            emit(check="lif_fwd_bwd_time", impl=impl, dtype=jnp.dtype(dtype).name, error=f"{type(e).__name__}: {str(e)[:1500]}")
EOF

step vs_T60_B64 150 $VS --T 60 --batch 64 --steps 10 --frameworks jax,torch,sjlif
step vs_T60_B64_scan 90 $VS --T 60 --batch 64 --steps 10 --frameworks jax --jax-set neuron_impl=scan
step vs_T16_B16 90 $VS --T 16 --batch 16 --steps 20 --frameworks jax,torch,sjlif
step vs_T60_B64_bf16 75 $VS --T 60 --batch 64 --steps 10 --dtype bfloat16 --frameworks jax
step compile_T16 70 $PY benchmarks/compile_time.py --T 16 --batch 16 --threads 0 --timeout 60
step vs_T16_B16_scan 45 $VS --T 16 --batch 16 --steps 20 --frameworks jax --jax-set neuron_impl=scan

# --- compact summary of every row (the files hold the full JSON) -------------------------------------------------
$PY - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import glob, json, os, sys
out = sys.argv[1]
for path in sorted(glob.glob(os.path.join(out, "*.jsonl"))):
    name = os.path.basename(path)[:-6]
    for line in open(path):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "error" in r:
            print(name, "ERROR", {k: v for k, v in r.items() if k != "error"}, str(r["error"])[-600:].replace("\n", " | "))
        elif r.get("check"):
            print(name, {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()})
        elif r.get("summary"):
            keep = ("T", "batch", "dtype", "speedup_jax_over_sj", "speedup_jax_over_sjlif", "memory_ratio_jax_to_sj",
                    "first_s", "second_s", "first_total_s", "second_total_s", "second_compile_within_2s")
            print(name, "summary", {k: (round(r[k], 3) if isinstance(r[k], float) else r[k]) for k in keep if k in r})
        elif "framework" in r:
            st = r.get("step_seconds") or {}
            ma = r.get("memory_analysis_mb") or {}
            print(name, r["framework"], f"T={r['T']} B={r['batch']} {r['dtype']}",
                  "resolved=" + json.dumps(r.get("execution_resolved") or r.get("execution")),
                  f"step_ms={1e3 * st.get('median', float('nan')):.1f}", f"compile_s={r.get('compile_seconds', 0):.1f}",
                  f"peak_mb={r.get('peak_rss_mb', 0):.0f}", f"memory_analysis_total_mb={ma.get('total', float('nan')):.0f}",
                  f"temp_mb={ma.get('temp', float('nan')):.0f}")
        elif "run" in r:
            print(name, "run", r["run"], {k: round(r[k], 2) for k in ("import_s", "build_s", "lower_s", "compile_s", "first_step_s") if k in r})
EOF
tail -n 2 "$OUT"/*.err 2>/dev/null | tail -n 40
echo "total $((SECONDS - START))s"
