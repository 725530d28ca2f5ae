#!/bin/bash
# Sharded validation on 2 GPUs (BENCHMARKS.md "Sharded validation"): `hsd validate` itself, under
# torchrun, on the gpt-oss-120b architecture in random bf16 weights (~234 GB: built sharded by the
# `tp` backend, partitioned by ZeRO-3 in the `deepspeed` one, never whole on one GPU) with each
# sharded backend, and gpt-oss-20b sharded vs data-parallel `hf` for scale. Prompts: the rich
# template without few-shot examples, in gpt-oss's own o200k_harmony tokens (`random:` models use
# that tokenizer; the full rich prompt is ~1,780 tokens), 128 new tokens forced (min_new_tokens),
# greedy. The prompt-token median is in the table.
#
# samples/s is the manifest's (evaluated / generation seconds: model build excluded, its wall time
# is reported too); peak GiB per GPU is nvidia-smi's memory.used sampled every 0.5 s during the run.
# Writes $OUT/bench_sharded.md (the table, one row per run), the logs and the manifests.
#
#   make data                                     # the test split under data/ (or DATA_DIR=...)
#   OUT=bench_sharded_out bash tools/bench_sharded.sh          # 2 GPUs (nvidia-h200-x2), ~8 min
#   RUNS="tp120 ds120" bash tools/bench_sharded.sh             # some of the runs
#
# Runs (name: model, backend, batch per rank, samples; each capped by `timeout`):
#   tp120      120b, tp (tensor + expert parallel), static cache + CUDA-graph decode, batch 32 x 2 ranks
#   tp120_eager 120b, tp, transformers' generate (no static cache / graphs), batch 32 x 2 ranks
#   ds120      120b, deepspeed ZeRO-3, MoE block = one ZeRO-3 leaf + prefetch (zero3_inference_moe.json), batch 32
#   tp20       20b, tp, batch 64             hf20   20b, hf, 2 data-parallel replicas, batch 64
#   ds20       20b, deepspeed, zero3_inference_moe.json, batch 32
#   tp20_oom   (not in the default RUNS) tp20 with an out-of-memory error injected on rank 1 at its 2nd batch
#              (HSD_INJECT_FAULT=oom:1:2): completes, both ranks log "every rank retries with 32" (the lock-step
#              OOM path on NCCL; its records must equal tp20's: compare the two results/*/intermediate_results_*.jsonl)
set -o pipefail
NGPU=${NGPU:-2}
OUT=${OUT:-bench_sharded_out}
DATA_DIR=${DATA_DIR:-${HSD_DATA_DIR:-data}}
RUNS=${RUNS:-"tp120 ds120 tp20 hf20 tp120_eager ds20"}
M120=${M120:-random:gpt-oss-120b} M20=${M20:-random:gpt-oss-20b}  # (a CPU smoke test points them at the tiny model)
N_TP=${N_TP:-512} N_DS=${N_DS:-64} N_EAGER=${N_EAGER:-256}  # samples per run
# Batch per rank (halved on every rank together if one runs out of memory). tp runs the ranks' batches as
# one: 120b at 32 x 2 rows leaves room for the static KV cache (~8.5 GB) next to ~118 GB of weights per GPU.
B_TP120=${B_TP120:-32} B_TP20=${B_TP20:-64} B_DS=${B_DS:-32}
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0} TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpus.txt"
python3 -c "import torch, transformers, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | tail -1 | tee "$OUT/versions.txt"
git rev-parse --short HEAD 2>/dev/null | tee "$OUT/git_sha.txt"
date -u

cat > "$OUT/config.yaml" <<EOF
experiment: bench_sharded
results_dir: $OUT/results
data: {dir: $DATA_DIR, split: test, max_samples: 64}
prompt: {template: rich, few_shot_per_group: 0}
model: {name_or_path: $M120}
inference: {max_new_tokens: 128, min_new_tokens: 128, temperature: 0.0, progress: false}
EOF
echo "| run | model | backend | GPUs | batch / rank | samples | prompt tokens (median) | new tokens | samples/s | wall s (incl. build) | peak GiB per GPU | status | overrides |" > "$OUT/bench_sharded.md"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|" >> "$OUT/bench_sharded.md"

row() {  # name, run dir, exit code, wall seconds, memory csv, overrides...
  python3 - "$@" "$OUT" <<'PY'
import csv, json, statistics, sys
from pathlib import Path
name, run, rc, wall, mem, *overrides = sys.argv[1:-1]
out, run = Path(sys.argv[-1]), Path(run)
peak = {}
for r in csv.reader(open(mem)) if Path(mem).exists() else []:
    try:
        peak[r[0].strip()] = max(peak.get(r[0].strip(), 0.0), float(r[1].split()[0]) / 1024)
    except (IndexError, ValueError):
        pass
m = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").exists() else {}
recs = [json.loads(l) for p in run.glob("intermediate_results_*.jsonl") for l in p.read_text().splitlines()]
if m:
    (out / f"{name}_manifest.json").write_text(json.dumps(m, indent=1))
ov = dict(o.split("=", 1) for o in overrides)
cells = [name, ov.get("model.name_or_path", "?"), ov.get("inference.backend", "hf"),
         str(m.get("world_size", "?")), ov.get("inference.batch_size", "8"), str(len(recs)),
         str(statistics.median(r["prompt_tokens"] for r in recs)) if recs else "-",
         str(statistics.median(r["new_tokens"] for r in recs)) if recs else "-",
         str(m.get("samples_per_s", "-")), wall, " / ".join(f"{v:.1f}" for _, v in sorted(peak.items())) or "-",
         f"{m.get('status', 'no manifest')} (rc {rc})", "`" + " ".join(overrides) + "`"]
line = "| " + " | ".join(cells) + " |"
print("ROW", line)
with open(out / "bench_sharded.md", "a") as f:
    f.write(line + "\n")
PY
}

go() {  # name, time cap (s), overrides...
  [[ " $RUNS " == *" $1 "* ]] || return 0
  local name=$1 cap=$2; shift 2
  local run="$OUT/results/$name" t0=$SECONDS
  rm -rf "$run"
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader -lms 500 > "$OUT/$name.mem.csv" &
  local smi=$!
  timeout "$cap" torchrun --standalone --nproc_per_node "$NGPU" -m hsd.cli validate --config "$OUT/config.yaml" \
    --run-dir "$run" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  row "$name" "$run" "$rc" $((SECONDS - t0)) "$OUT/$name.mem.csv" "$@"
  grep -E "holds|out of memory|retries|Error|error" "$OUT/$name.log" | grep -v Warning | tail -5
}

MOE=inference.ds_config=ds_configs/zero3_inference_moe.json
go tp120 300 inference.backend=tp inference.batch_size=$B_TP120 data.max_samples=$N_TP model.name_or_path=$M120
go ds120 330 inference.backend=deepspeed $MOE inference.batch_size=$B_DS data.max_samples=$N_DS model.name_or_path=$M120
go tp20 150 inference.backend=tp inference.batch_size=$B_TP20 data.max_samples=$N_TP model.name_or_path=$M20
go hf20 150 inference.backend=hf inference.batch_size=$B_TP20 data.max_samples=$N_TP model.name_or_path=$M20
go tp120_eager 240 inference.backend=tp inference.static_cache=false inference.batch_size=$B_TP120 data.max_samples=$N_EAGER model.name_or_path=$M120
HSD_INJECT_FAULT=oom:1:2 go tp20_oom 150 inference.backend=tp inference.batch_size=$B_TP20 data.max_samples=$N_TP model.name_or_path=$M20
go ds20 240 inference.backend=deepspeed $MOE inference.batch_size=$B_DS data.max_samples=$N_DS model.name_or_path=$M20
date -u
cat "$OUT/bench_sharded.md"
