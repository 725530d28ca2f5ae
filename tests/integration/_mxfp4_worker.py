"""One rank of the MXFP4 + ZeRO-3 load test: hsd's training load path, what this rank holds, a JSON file.

    torchrun --nproc_per_node 2 tests/integration/_mxfp4_worker.py MXFP4_DIR OUT_DIR BROKEN_MXFP4_DIR

Run by torchrun (gloo). The reference is transformers' own MXFP4 dequantization of the same
checkpoint, loaded whole before ZeRO-3 is switched on; then the model is loaded exactly as
``hsd train`` loads it (Accelerate + DeepSpeed ZeRO-3, ``hsd.training.lora.load_base``).
"""

from __future__ import annotations

import json
import os
import sys

import torch


def main(model_dir: str, out_dir: str, broken_dir: str) -> None:
    import deepspeed
    from transformers import AutoModelForCausalLM, Mxfp4Config

    from hsd import distributed
    from dataclasses import replace

    from hsd.config import from_dict
    from hsd.errors import ModelError
    from hsd.models.mxfp4_load import record_for
    from hsd.training.accel import make_accelerator, release
    from hsd.training.lora import load_base

    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                     quantization_config=Mxfp4Config(dequantize=True))
    expected = {name: p.detach().clone() for name, p in reference.named_parameters()}
    env = distributed.init_distributed("cpu", always=True)
    cfg = from_dict({"model": {"name_or_path": model_dir, "dtype": "float32"}, "train": {"ds_config": "zero3"}})
    accelerator, _ = make_accelerator(cfg, env)  # ZeRO-3 thresholds are sized from this model
    model = load_base(cfg.model, checkpointing=False)
    params = dict(model.named_parameters())
    held_whole = [n for n, p in params.items() if p.numel() > 0]  # ZeRO-3 leaves an empty .data when partitioned
    differ = []
    for name, param in params.items():
        with deepspeed.zero.GatheredParameters([param]):
            if not torch.equal(param.data, expected[name]):
                differ.append(name)
    report = {"rank": accelerator.process_index, "world": accelerator.num_processes, "held_whole": held_whole,
              "differ": differ, "names_match": sorted(params) == sorted(expected),
              "record": record_for(model_dir)}
    try:  # a checkpoint with a tensor missing: the same error on every rank, before any collective (no hang)
        load_base(replace(cfg.model, name_or_path=broken_dir), checkpointing=False)
    except ModelError as exc:
        report["broken_error"] = str(exc)
    with open(os.path.join(out_dir, f"rank{accelerator.process_index}.json"), "w") as f:
        json.dump(report, f)
    accelerator.wait_for_everyone()
    release()
    distributed.teardown(env)


if __name__ == "__main__":
    main(*sys.argv[1:4])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as _ds_worker.py: skip the rare C++ abort at interpreter shutdown after gloo collectives
