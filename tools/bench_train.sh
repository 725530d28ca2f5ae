#!/bin/bash
# The training benchmark of BENCHMARKS.md ("LoRA training"): hsd's defaults against the old
# pipeline's settings through `hsd train`, on one CUDA GPU, with the full-size gpt-oss-20b
# architecture in random bf16 weights. Prints one SUMMARY line per run; manifests and logs go
# to $OUT (default: bench_train_out/).
#
#   hsd ftdata --config configs/bench_train_gpu.yaml --out .gpu/ftdata    # once (CPU is fine)
#   bash tools/bench_train.sh .gpu/ftdata                                 # ~6 min on an H100
#   RUNS="hsd_mb4 old_mb4" bash tools/bench_train.sh .gpu/ftdata          # some of the runs
set -o pipefail
DATA=${1:?usage: tools/bench_train.sh FTDATA_DIR}
OUT=${OUT:-bench_train_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, deepspeed, peft, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)" 2>&1 | tail -1
date -u
T="torchrun --nproc_per_node 1 -m hsd.cli train --config configs/bench_train_gpu.yaml --data $DATA"
show() {  # run dir, exit code, wall seconds
  python3 - "$@" "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
run, rc, wall, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
if not (run / "manifest.json").exists():
    print("SUMMARY", run.name, "rc", rc, "no manifest"); sys.exit()
m = json.loads((run / "manifest.json").read_text())
(out / f"{run.name}_manifest.json").write_text(json.dumps(m, indent=1))
steps = [json.loads(l) for l in (run / "train_log.jsonl").read_text().splitlines() if '"loss"' in l]
t = [s["train_time_s"] for s in steps]
dt = [b - a for a, b in zip(t, t[1:])]
print("SUMMARY", run.name, "rc", rc, "wall_s", wall, "status", m.get("status"), "zero", m.get("zero_stage"),
      "ckpt", m.get("gradient_checkpointing_active"), "tokens/s", m.get("tokens_per_s"), "steady tokens/s", m.get("steady_tokens_per_s"),
      "samples/s", m.get("samples_per_s"), "peak GiB", m.get("peak_memory_gib"), "steps", len(steps),
      "step1_s", round(t[0], 2) if t else None, "median s/step after 1", round(statistics.median(dt), 4) if dt else None,
      "loss first", steps[0]["loss"] if steps else None, "last", steps[-1]["loss"] if steps else None)
PY
}
go() {  # name, time cap (s), overrides...
  [ -z "$RUNS" ] || [[ " $RUNS " == *" $1 "* ]] || return 0
  local name=$1 cap=$2; shift 2
  local t0=$SECONDS
  rm -rf "/tmp/hsd_bench_$name"
  timeout "$cap" $T --run-dir "/tmp/hsd_bench_$name" results_dir=/tmp "$@" > "$OUT/$name.log" 2>&1
  show "/tmp/hsd_bench_$name" $? $((SECONDS - t0))
}
# Every run names its micro-batch: hsd's default is 8, the old pipeline's was 4.
go hsd_mb4 150 train.micro_batch_size=4 train.max_steps=20
go old_mb4 200 model.attn_implementation=eager model.experts_implementation=eager 'train.lora.target_modules=[q_proj,v_proj]' train.micro_batch_size=4 train.max_steps=20
go hsd_mb8 150 train.micro_batch_size=8 train.max_steps=20
go hsd_mb4_nocompile 120 model.compile_experts=false train.micro_batch_size=4 train.max_steps=20
go hsd_mb4_zero3 120 train.ds_config=zero3 train.micro_batch_size=4 train.max_steps=10
date -u
