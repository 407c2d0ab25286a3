#!/usr/bin/env bash
# GPU proof of the sharded engines (not part of CI; run on a machine with at least one CUDA GPU):
#   bash benchmarks/gpu_proof.sh            # FSDP2 and ZeRO-3, bf16, on every visible GPU (1 is enough)
#   PROOF_ONLY=zero3 bash benchmarks/gpu_proof.sh   # one engine (zero3 also runs on 2 CPU processes)
# For each engine it trains the digits recipe for 40 steps with a checkpoint at step 20, resumes a copy of
# that checkpoint to step 40, consolidates the step-40 checkpoint's shards (`neurotrain consolidate`) and
# checks, on one CPU process: consolidated weights == model/ (gathered at the end) and resumed == straight.
# Every check prints PASS or FAIL; the exit status is the number of FAILs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${PROOF_OUT:-/tmp/neurotrain_gpu_proof}
ENGINES=${PROOF_ONLY:-fsdp2 zero3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
rm -rf "$OUT" && mkdir -p "$OUT"
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
PROCS=${PROOF_PROCS:-$GPUS}
PRECISION=bf16
RESUME_TOL=5e-3  # bf16 autocast on GPU: kernels are not bitwise reproducible across launches
if [ "$GPUS" = "0" ]; then
  echo "no CUDA GPU: FSDP needs one; ZeRO-3 runs on 2 CPU processes in fp32 instead"
  PROCS=2 PRECISION=no RESUME_TOL=1e-6 ENGINES=${ENGINES//fsdp2/}
fi
"$PY" -m neurotrain_hf.cli env | head -20
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
FAILS=0

config_for() {  # accelerate config: the shipped one; ZeRO-3 without the 16-bit gather (shards only)
  local engine=$1 target="$OUT/$1.yaml"
  cp "recipes/accelerate/$engine.yaml" "$target"
  sed -i "s/^num_processes: .*/num_processes: $PROCS/; s/^mixed_precision: .*/mixed_precision: '$PRECISION'/" "$target"
  sed -i "s/zero3_save_16bit_model: true/zero3_save_16bit_model: false/" "$target"
  echo "$target"
}

train() {  # engine run_id max_steps [resume]
  local engine=$1 run=$2 steps=$3 resume=${4:-}
  sed 's/dropout = 0.1/dropout = 0.0/' recipes/configs/digits_cnn.toml > "$OUT/digits.toml"  # no random masks
  local args=("$OUT/digits.toml" --basic.run_id "$run" --basic.output_dir "$OUT/runs"
    --training.max_steps "$steps" --training.save_strategy steps --training.save_steps 20
    --training.eval_strategy steps --training.eval_steps 20 --training.load_best_model_at_end false
    --training.early_stopping_patience 100 --training.save_total_limit 5
    --training.plots false)
  [ "$PRECISION" = bf16 ] && args+=(--training.bf16 true)
  [ -n "$resume" ] && args+=(--training.resume_from_checkpoint last)
  local start=$SECONDS
  "$PY" -m accelerate.commands.launch --config_file "$(config_for "$engine")" \
    recipes/train_classification.py "${args[@]}" > "$OUT/$run.log" 2>&1
  local rc=$?
  echo "$run: exit $rc in $((SECONDS - start)) s; $(grep '^test metrics:' "$OUT/$run.log" | tail -1)"
  [ $rc -eq 0 ] || { tail -20 "$OUT/$run.log"; FAILS=$((FAILS + 1)); }
}

check() {  # description, python expression printing PASS/FAIL
  local verdict
  verdict=$("$PY" - "$@" 2>>"$OUT/check.log" <<'EOF'
import sys
import torch
from safetensors.torch import load_file
what, a, b, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
x, y = load_file(a), load_file(b)
worst = max((x[k].float() - y[k].float()).abs().max().item() for k in x) if x.keys() == y.keys() else float("inf")
print(f"{'PASS' if worst <= tol else 'FAIL'} {what}: largest difference {worst:.3g} (tolerance {tol:g})")
EOF
)
  echo "${verdict:-FAIL $1: the check did not run (see $OUT/check.log)}"
  [[ "$verdict" == PASS* ]] || FAILS=$((FAILS + 1))
}

for engine in $ENGINES; do
  echo "== $engine on $PROCS process(es), mixed precision $PRECISION"
  train "$engine" "$engine" 40
  run="$OUT/runs/classification/$engine"
  mkdir -p "$OUT/runs/classification/$engine-resumed"
  cp -r "$run/checkpoint-20" "$OUT/runs/classification/$engine-resumed/"
  train "$engine" "$engine-resumed" 40 resume
  ls "$run/checkpoint-40" | tr '\n' ' '; echo
  "$PY" -m neurotrain_hf.cli consolidate "$run/checkpoint-40" 2>>"$OUT/check.log" || FAILS=$((FAILS + 1))
  check "$engine consolidated checkpoint-40 == model/" \
    "$run/checkpoint-40/consolidated/model.safetensors" "$run/model/model.safetensors" 0
  check "$engine resumed at step 20 == straight run (model/)" \
    "$OUT/runs/classification/$engine-resumed/model/model.safetensors" "$run/model/model.safetensors" "$RESUME_TOL"
  verdict=$(CUDA_VISIBLE_DEVICES= "$PY" - "$run" 2>>"$OUT/check.log" <<'EOF'
import sys
from sklearn.datasets import load_digits
from neurotrain_hf.predictor import Predictor
run = sys.argv[1]
images = list(load_digits().images[:200])
ours = [p["label"] for p in Predictor.from_pretrained(f"{run}/checkpoint-40/consolidated").predict(images)]
final = [p["label"] for p in Predictor.from_pretrained(run).predict(images)]
same = sum(a == b for a, b in zip(ours, final))
print(f"{'PASS' if same == len(images) else 'FAIL'} consolidated folder served on one CPU process: {same}/{len(images)} predictions equal model/'s")
EOF
)
  echo "${verdict:-FAIL one-process inference did not run (see $OUT/check.log)}"
  [[ "$verdict" == PASS* ]] || FAILS=$((FAILS + 1))
done
echo "gpu proof: $FAILS failure(s)"
exit "$FAILS"
