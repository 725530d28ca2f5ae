#!/bin/bash
# LoRA training on 1 vs 2 GPUs through `hsd train`, each run one job under submitit's local
# executor (tools/submit_train.py), full-size gpt-oss-20b architecture in random bf16 weights,
# seq 1,024, micro-batch 8, LoRA r 32 (configs/bench_train_gpu.yaml). One SUMMARY line per run
# (steady tokens/s, median s/step, peak GiB from the manifest); manifests and logs in $OUT.
#
#   hsd ftdata --config configs/bench_train_gpu.yaml --out .gpu/ftdata        # once (CPU is fine)
#   NCCL_NVLS_ENABLE=0 bash tools/bench_train_multi.sh .gpu/ftdata            # all runs, 2 GPUs
#   RUNS="auto1 auto2 z3" bash tools/bench_train_multi.sh .gpu/ftdata         # some of them
#
# Runs: auto1 / auto2 (train.ds_config auto on 1 / 2 GPUs: ZeRO-2 by memory), z2_2, z3 (ZeRO-3
# with both speed-ups), z3_noleaf (train.zero3_moe_leaves=false), z3_notune (train.zero3_tuning=false),
# z3_plain (both off: the ZeRO-3 measured at 10,615 tokens/s), old2 (the old pipeline's settings, ZeRO-3 as auto
# chose it before), pertask (2 ranks started by hand, each seeing only its own GPU),
# big_stop + big_resume + big_full (random:gpt-oss-120b, ZeRO-3, 20 steps, stopped at 10 and resumed;
# big_full uninterrupted for the loss comparison), kill2 (rank 1 SIGKILLed after 2 steps: the job
# must end within 60 s).
set -o pipefail
DATA=${1:?usage: tools/bench_train_multi.sh FTDATA_DIR}
OUT=${OUT:-bench_train_multi_out}; STEPS=${STEPS:-12}; TMP=${TMP_RUNS:-/tmp/hsd_bench_multi}
CONFIG=configs/bench_train_gpu.yaml
mkdir -p "$OUT" "$TMP"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
git rev-parse --short HEAD 2>/dev/null; date -u
show() {  # name, run dir, exit code, wall seconds
  python3 - "$@" "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
name, run, rc, wall, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5])
if not (run / "manifest.json").exists():
    print("SUMMARY", name, "rc", rc, "wall_s", wall, "no manifest"); sys.exit()
m = json.loads((run / "manifest.json").read_text())
(out / f"{name}_manifest.json").write_text(json.dumps(m, indent=1))
steps = [json.loads(l) for l in (run / "train_log.jsonl").read_text().splitlines() if '"loss"' in l]
t = [s["train_time_s"] for s in steps]
dt = [b - a for a, b in zip(t, t[1:])]
choice = m.get("ds_choice") or {}
print("SUMMARY", name, "rc", rc, "wall_s", wall, "status", m.get("status"), "ranks", m.get("world_size"),
      "zero", m.get("zero_stage"), "auto", choice.get("name"), "est_GiB", choice.get("estimate_gib"),
      "leaves", m.get("zero3_leaf_modules"), "steady_tokens/s", m.get("steady_tokens_per_s"),
      "median_s/step", round(statistics.median(dt), 3) if dt else None, "peak_GiB", m.get("peak_memory_gib"),
      "loaded_per_rank", m.get("loaded_elements_per_rank"), "resumed_at", m.get("resumed_at"),
      "losses", [round(s["loss"], 4) for s in steps])
PY
}
want() { [ -z "$RUNS" ] || [[ " $RUNS " == *" $1 "* ]]; }
go() {  # name, GPUs, time cap (s), overrides...
  want "$1" || return 0
  local name=$1 gpus=$2 cap=$3; shift 3
  local t0=$SECONDS
  [[ "$name" == big_resume ]] || rm -rf "$TMP/$name"
  local dir=$TMP/$name; [[ "$name" == big_resume ]] && dir=$TMP/big_stop
  timeout "$cap" python3 tools/submit_train.py "$gpus" "$dir" "$DATA" "$CONFIG" results_dir="$TMP" \
    train.max_steps="$STEPS" train.micro_batch_size=8 "$@" > "$OUT/$name.log" 2>&1
  show "$name" "$dir" $? $((SECONDS - t0))
}
OLD=(model.attn_implementation=eager model.experts_implementation=eager 'train.lora.target_modules=[q_proj,v_proj]')
go auto1 1 240
go auto2 2 240
go z2_2 2 240 train.ds_config=zero2
go z3 2 300 train.ds_config=zero3
PLAIN=(train.zero3_moe_leaves=false train.zero3_tuning=false)
go z3_noleaf 2 300 train.ds_config=zero3 train.zero3_moe_leaves=false
go z3_notune 2 300 train.ds_config=zero3 train.zero3_tuning=false
go z3_plain 2 300 train.ds_config=zero3 "${PLAIN[@]}"
go old2 2 400 train.ds_config=zero3 "${OLD[@]}" "${PLAIN[@]}" train.micro_batch_size=4
BIG=(model.name_or_path=random:gpt-oss-120b train.ds_config=zero3)
STEPS=20 go big_stop 2 600 "${BIG[@]}" train.stop_after_steps=10
STEPS=20 go big_resume 2 600 "${BIG[@]}"
STEPS=20 go big_full 2 600 "${BIG[@]}"
if want pertask; then  # each rank sees only its own GPU (--gpus-per-task): both must bind cuda:0
  rm -rf "$TMP/pertask"; t0=$SECONDS; port=$((20000 + RANDOM % 20000))
  for r in 0 1; do
    CUDA_VISIBLE_DEVICES=$r RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      timeout 300 python3 -m hsd.cli train --config $CONFIG --data "$DATA" --run-dir "$TMP/pertask" results_dir="$TMP" \
      train.max_steps="$STEPS" > "$OUT/pertask_rank$r.log" 2>&1 &
  done
  wait; show pertask "$TMP/pertask" $? $((SECONDS - t0))
fi
if want kill2; then  # rank 1 SIGKILLed after 2 steps: the whole job must end within 60 s
  rm -rf "$TMP/kill2"; t0=$SECONDS
  timeout 400 python3 tools/submit_train.py 2 "$TMP/kill2" "$DATA" $CONFIG results_dir="$TMP" train.max_steps=200 \
    > "$OUT/kill2.log" 2>&1 & sub=$!
  until [ "$(grep -c '"loss"' "$TMP/kill2/train_log.jsonl" 2>/dev/null)" -ge 2 ] || ! kill -0 $sub 2>/dev/null; do sleep 1; done
  rank0=$(awk '{print $2}' "$TMP/kill2/.lock")
  victim=$(ps -eo pid,args | grep "[s]ubmitit.core._submit.*kill2_submitit" | awk '{print $1}' | grep -vx "$rank0" | head -1)
  echo "rank 0 pid $rank0, killing pid $victim"; tk=$SECONDS; kill -9 "$victim"
  wait $sub; echo "SUMMARY kill2 rc $? job_ended_s_after_kill $((SECONDS - tk)) (must be < 60)"
  grep -h "PeerFailedError\|FAILED" "$OUT/kill2.log" "$TMP"/kill2_submitit/submitit/*_0_log.err 2>/dev/null | head -3
fi
date -u
