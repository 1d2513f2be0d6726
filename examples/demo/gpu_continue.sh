#!/usr/bin/env bash
# Continue training the demo model on a lent GPU, inside ONE device call, starting from the shipped weights.
#
#   bash examples/demo/gpu_continue.sh OUT [MINUTES]      # on the GPU machine, from the repository root
#
# Steps: the training shots are generated there (`lvcd data synth --workers $(nproc)`, then their latents with the
# shipped VAE on the GPU); `lvcd train` fine-tunes UNet + ControlNet (every tensor, EMA) from the shipped weights
# for MINUTES of steps (train.max_minutes: it checkpoints, evaluates and stops by itself; the last quarter at a fifth
# of the learning rate, a cool-down); the EMA becomes one fp16
# file like the shipped one. OUT receives that file in parts under 15 MiB (the device tool brings back files of at
# most 16 MiB), the training and eval logs, and summary.json. Back on the dev machine:
#
#   cat OUT/lvcd-demo.safetensors.part* > lvcd-demo.safetensors && sha256sum -c OUT/lvcd-demo.safetensors.sha256
#   python benchmarks/demo_quality.py --weights lvcd-demo.safetensors ...   # measure before shipping it
#
# Environment knobs (defaults are for an H100/H200 with 16 cores): LVCD_DEMO_SHOTS (800), LVCD_DEMO_BATCH (32),
# LVCD_DEMO_LR (2e-4), LVCD_DEMO_WORKERS (cores, at most 16), LVCD_DEMO_WORK (/tmp/lvcd-demo-gpu), LVCD_DEMO_WEIGHTS
# (the shipped file), LVCD_DEMO_SET (more `lvcd train --set` items, space-separated), LVCD_DEMO_BUDGET_S (the whole
# script's wall-clock budget, default MINUTES x 60 + 120 s: keep it under the device call's limit; the training gets
# what the data step leaves, less LVCD_DEMO_RESERVE_S = 90 s for the two trainings' set-up, final checkpoint and
# eval, and the export). On a machine without CUDA it refuses more than 64 shots (a CPU would not finish in time)
# unless LVCD_DEMO_ALLOW_CPU=1. The same script runs on CPU at a toy scale (tests/train/test_demo_gpu_script.py).
# The warm phase's checkpoint is exported as soon as it is written, and the cool-down's replaces it; if a step fails
# after a checkpoint exists, the newest checkpoint is still exported (an EXIT trap), so a device call killed late
# (even by SIGKILL, which runs no trap) still brings back the warm phase's weights. summary.json names the step.
set -euo pipefail
out="${1:?usage: gpu_continue.sh OUT [MINUTES]}"
minutes="${2:-5}"
shots="${LVCD_DEMO_SHOTS:-800}"
batch="${LVCD_DEMO_BATCH:-32}"
lr="${LVCD_DEMO_LR:-2e-4}"
cores="$(nproc)"
workers="${LVCD_DEMO_WORKERS:-$(( cores > 16 ? 16 : cores ))}"
work="${LVCD_DEMO_WORK:-/tmp/lvcd-demo-gpu}"
weights="${LVCD_DEMO_WEIGHTS:-src/lvcd/demo/lvcd-demo.safetensors}"
budget_s="${LVCD_DEMO_BUDGET_S:-$(python3 -c "print(int($minutes * 60 + 120))")}"
reserve_s="${LVCD_DEMO_RESERVE_S:-90}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# fp32 training (diffusion.toml: mixed_precision "no"): let cuBLAS use TF32 tensor cores for its matrix products, as
# cuDNN already does for convolutions by default (PyTorch's own switch; no effect on a CPU)
export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE="${TORCH_ALLOW_TF32_CUBLAS_OVERRIDE:-1}"
lvcd() { python3 -m lvcd.cli "$@"; }
started=$(date +%s)
device="$(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')"
if [ "$device" = cpu ] && [ "$shots" -gt 64 ] && [ "${LVCD_DEMO_ALLOW_CPU:-0}" != 1 ]; then
  echo "error: no CUDA device here: $shots shots would not finish on a CPU (set LVCD_DEMO_ALLOW_CPU=1 to try)" >&2
  exit 2
fi
run="$work/run-$started"  # a fresh run folder: a checkpoint of an earlier call on a warm machine is never resumed
mkdir -p "$out" "$work"
exported='' data_s=0

export_newest() {  # the newest checkpoint's EMA, the logs and a summary -> OUT (again when a newer one exists)
  local checkpoint
  checkpoint="$(ls -d "$run"/checkpoints/step_* 2>/dev/null | tail -n 1)"
  if [ -z "$checkpoint" ]; then
    echo "== export: no checkpoint was written, nothing to export" >&2
    return 0
  fi
  [ "$checkpoint" = "$exported" ] && return 0
  echo "== export: $checkpoint"
  rm -rf "$work/export" && mkdir -p "$work/export"
  lvcd convert --svd "$weights" --lvcd "$checkpoint/ema.safetensors" --subset full --dtype fp16 \
    -o "$work/export/lvcd-demo.safetensors"
  (cd "$work/export" && sha256sum lvcd-demo.safetensors) > "$work/export/lvcd-demo.safetensors.sha256"
  split -b 15M -d "$work/export/lvcd-demo.safetensors" "$work/export/lvcd-demo.safetensors.part"
  # into OUT: the old parts out, the new ones and their checksum in (a call killed in between leaves parts that
  # fail `sha256sum -c`, never a wrong file that passes it)
  rm -f "$out"/lvcd-demo.safetensors.part* "$out/lvcd-demo.safetensors.sha256"
  mv "$work"/export/lvcd-demo.safetensors.part* "$out/"
  mv "$work/export/lvcd-demo.safetensors.sha256" "$out/"
  cp "$run/logs/eval_log.csv" "$out/eval_log.csv" 2>/dev/null || true
  for log in "$run"/logs/*train*.csv; do  # the header and the last 200 rows
    [ -f "$log" ] && { head -n 1 "$log"; tail -n +2 "$log" | tail -n 200; } > "$out/train_log_tail.csv"
  done
  python3 - "$out/summary.json" "$checkpoint" "$data_s" "$(( $(date +%s) - started ))" "$device" "$batch" "$lr" <<'PY'
import json, sys, torch
path, checkpoint, data_s, total_s, device, batch, lr = sys.argv[1:]
summary = {
    "checkpoint": checkpoint, "step": int(checkpoint.rsplit("_", 1)[1]), "data_seconds": int(data_s),
    "total_seconds": int(total_s), "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    "torch": torch.__version__, "batch_size": int(batch), "learning_rate": float(lr),
}
open(path, "w").write(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary))
PY
  exported="$checkpoint"
}
trap 'status=$?; export_newest || true; exit $status' EXIT
trap 'exit 143' TERM

echo "== data: $shots shots, $workers processes, latents on $device; budget ${budget_s} s"
lvcd data synth "$work/synth" --shots "$shots" --frames 45 --size 64x64 --vae "$weights" --device "$device" \
  --workers "$workers" --quiet
data_s=$(( $(date +%s) - started ))

# The training gets the budget's rest (at most MINUTES): three quarters at lr, the last quarter at lr/5 (a cool-down:
# resuming takes the new rate).
read -r warm_minutes cool_minutes cool_lr < <(python3 -c "
left = ($budget_s - $data_s - $reserve_s) / 60
train = max(min($minutes, left), 0)
print(train * 0.75, train * 0.25, $lr / 5)")
train_args=(--config examples/demo/diffusion.toml --no-progress
  --set "model.svd=\"$weights\"" --set "model.lvcd=\"$weights\"" --set model.from_scratch=false
  --set "data.root=\"$work/synth\"" --set "output_dir=\"$run\"" --set "data.num_workers=$(( workers > 8 ? 8 : workers ))"
  --set "train.batch_size=$batch" --set train.max_steps=1000000 --set optim.warmup_steps=200
  --set checkpoint.every=1000000 --set checkpoint.keep=1 --set eval.every=500)
for item in ${LVCD_DEMO_SET:-}; do train_args+=(--set "$item"); done
if python3 -c "import sys; sys.exit(0 if $warm_minutes > 0 else 1)"; then
  echo "== train: $warm_minutes min at lr $lr, then $cool_minutes min at $cool_lr; batch $batch, from $weights"
  lvcd train "${train_args[@]}" --set "train.max_minutes=$warm_minutes" --set "optim.learning_rate=$lr"
  export_newest  # at once: a call killed during the cool-down (SIGKILL runs no trap) still brings this back
  lvcd train "${train_args[@]}" --set "train.max_minutes=$cool_minutes" --set "optim.learning_rate=$cool_lr" \
    --resume latest || echo "warning: the cool-down failed; the warm checkpoint is exported" >&2
else
  echo "warning: the data step left no time of the ${budget_s} s budget for training" >&2
fi
export_newest
