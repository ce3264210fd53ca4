#!/usr/bin/env bash
# Every visae stage on one GPU through the real CLI, then two timed ratios against physical references.
#
#   bench/gpu_check.sh                          a machine with one NVIDIA GPU (target: under 8 minutes)
#   GPU_CHECK_DEVICE=cpu bench/gpu_check.sh     tiny sizes on a CPU: checks the script, measures nothing
#
# Stages (each with --device): synth-aircraft data -> classifier train (1 epoch) -> extract -> train
# (topk and batchtopk) -> analyze -> steer-eval -> extract val -> eval -> report. Then bench/bench_gpu.py: (a) a TopK SAE training step vs one
# bare bf16 GEMM of the encoder's shape (d 768, width 12288, k 32, batch 4096), (b) extraction of a
# ViT-B-sized random-init model (224 px, 12 layers, d 768, saved locally, loaded as hf:DIR) vs its bare
# forward. DEVELOPERS.md says when and how to run it.
#
# Needs a python3 with torch, transformers, safetensors, numpy, pillow, typer, rich and pydantic; no network.
# Wheels found in .whl/ (DEVELOPERS.md: the GPU machine has no pydantic) are installed into a temporary
# directory first; visae runs from src/ (nothing is installed into the image). Results: a table on stdout,
# written with the full log to $OUT (when set) or to the work directory. Exit status 1 if a stage failed.
# Env: GPU_CHECK_DEVICE (default cuda), PYTHON (default .venv/bin/python if present, else python3), KEEP=1
# keeps the work directory.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"; elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
WORK="$(mktemp -d /tmp/visae-gpu-check.XXXXXX)"
RES="${OUT:-$WORK}"
mkdir -p "$RES"
LOG="$RES/gpu_check.log"
TABLE="$RES/gpu_check.txt"
: >"$LOG"
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$WORK"' EXIT
export VISAE_QUIET=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

# --- setup ------------------------------------------------------------------------------------------
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    || { echo "error: could not install the wheels in .whl/" >&2; exit 2; }
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
if ! missing="$("$PY" - <<'EOF' 2>&1
import importlib.util, sys
need = ["torch", "transformers", "safetensors", "numpy", "PIL", "typer", "rich", "pydantic"]
gone = [m for m in need if importlib.util.find_spec(m) is None]
print(" ".join(gone))
sys.exit(1 if gone else 0)
EOF
)"; then
  echo "error: $PY lacks: $missing; carry them as wheels in .whl/ (DEVELOPERS.md, 'The GPU check')" >&2
  exit 2
fi
if [[ "$DEVICE" == cuda* ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: torch sees no GPU; run with GPU_CHECK_DEVICE=cpu for the CPU check" >&2
  exit 2
fi
visae() { "$PY" -c 'import sys; from visae.cli import main; main(sys.argv[1:])' "$@"; }

if [[ "$DEVICE" == cpu ]]; then  # tiny: a check of the script
  N_TRAIN=240 N_VAL=60 N_OOD=30 CLF_BATCH=64 EXT_BATCH=64 SAE_BATCH=512 EXPANSION=4 K=8 SMALL=--small
else
  N_TRAIN=4000 N_VAL=400 N_OOD=200 CLF_BATCH=128 EXT_BATCH=256 SAE_BATCH=4096 EXPANSION=8 K=8 SMALL=
fi
CORES="$("$PY" -c 'import os; print(len(os.sched_getaffinity(0)))')"
WORKERS=$(( CORES > 8 ? 8 : CORES ))

# --- stages -----------------------------------------------------------------------------------------
STAGES=()
FAILED=0
T_START=$(date +%s.%N)
stage() {  # stage NAME CMD...: run, time, log; a failure is recorded and the next stages still run
  local name="$1"; shift
  local t0 t1 rc
  echo "== $name: $*" >>"$LOG"
  t0=$(date +%s.%N)
  "$@" >>"$LOG" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  if (( rc == 0 )); then STAGES+=("$(printf '%-20s %8s s  ok' "$name" "$secs")")
  else STAGES+=("$(printf '%-20s %8s s  FAILED (exit %d; see gpu_check.log)' "$name" "$secs" "$rc")"); FAILED=1
       echo "-- $name failed (exit $rc); last lines:" >&2; tail -n 5 "$LOG" >&2; fi
  echo "   $name: exit $rc, $secs s" >>"$LOG"
}

{ echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
} >>"$LOG" 2>&1

W="$WORK/run"
DATA="synth-aircraft:$W/data"
stage "data synth-aircraft" visae data synth-aircraft --out "$W/data" --n-train "$N_TRAIN" --n-val "$N_VAL" --n-ood "$N_OOD" --workers "$WORKERS"
stage "classifier train" visae classifier train --data "$DATA" --out "$W/clf" --epochs 1 --batch-size "$CLF_BATCH" --device "$DEVICE"
LAYER="$("$PY" -c 'import sys; from visae.reference_study import final_stage; print(final_stage(sys.argv[1]))' "hf:$W/clf" 2>>"$LOG" || echo convnext.encoder.stages.1)"
stage "extract" visae extract --model "hf:$W/clf" --layer "$LAYER" --data "$DATA" --out "$W/store" --batch-size "$EXT_BATCH" --device "$DEVICE"
for arch in topk batchtopk; do
  stage "train $arch" visae train --store "$W/store" --arch "$arch" --k "$K" --expansion "$EXPANSION" --batch-size "$SAE_BATCH" --out "$W/sae-$arch" --device "$DEVICE"
done
stage "analyze" visae analyze --run "$W/sae-topk" --top 8 --no-text-labels --device "$DEVICE"
stage "steer-eval" visae steer-eval --run "$W/sae-topk" --n-images 128 --per-group 2 --random-latents 2 --device "$DEVICE"
stage "extract val" visae extract --model "hf:$W/clf" --layer "$LAYER" --data "$DATA" --split val --out "$W/store-val" --batch-size "$EXT_BATCH" --device "$DEVICE"
stage "eval" visae eval --run "$W/sae-topk" --store "$W/store-val" --max-images 256 --compare "$W/sae-batchtopk" --device "$DEVICE"
stage "report" visae report --run "$W/sae-topk"
T_STAGES=$(date +%s.%N)

# --- timed ratios -----------------------------------------------------------------------------------
stage "bench_gpu.py" "$PY" bench/bench_gpu.py --device "$DEVICE" $SMALL --json "$RES/bench_gpu.json"
T_END=$(date +%s.%N)

# --- results ----------------------------------------------------------------------------------------
{
  echo "visae GPU check, $(date -u +%Y-%m-%dT%H:%MZ), device $DEVICE, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | sed 's/^/gpu: /' || true
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, '/ transformers', transformers.__version__)" 2>/dev/null
  echo
  echo "stage                    time    status    (data: $N_TRAIN train images; classifier 1 epoch)"
  printf '%s\n' "${STAGES[@]}"
  if [[ -f "$W/clf/visae_classifier.json" ]]; then
    "$PY" - "$W/clf/visae_classifier.json" <<'EOF' || true
import json, sys
m = json.load(open(sys.argv[1]))
c = m["compute"]
print(f"classifier: val top-1 {m['val_top1']:.3f} after 1 epoch, compute {c['dtype']} on {c.get('device', '?')}")
EOF
  fi
  awk -v a="$T_START" -v b="$T_STAGES" -v c="$T_END" 'BEGIN { printf "stages %.0f s, timed checks %.0f s, total %.0f s (target < 480 s on a GPU)\n", b - a, c - b, c - a }'
  echo
  if [[ -f "$RES/bench_gpu.json" ]]; then
    "$PY" - "$RES/bench_gpu.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"timed on {r['device']} ({r['name']}), torch {r['torch']}")
print(f"{'check':<8} {'reference':<34} {'ref ms':>9} {'ms':>9} {'ratio':>7}")
for row in r["rows"]:
    print(f"{row['check']:<8} {row['ref']:<34} {row['ref_ms']:>9.2f} {row['ms']:>9.2f} {row['ratio']:>7.3f}")
    print(f"         {row['shape']}; {row['note']}")
print("ratio: sae = GEMM time / step time (1.0 = a step costs one encoder GEMM); extract = extract time / bare forward")
EOF
  fi
} | tee "$TABLE"
exit "$FAILED"
