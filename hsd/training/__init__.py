"""LoRA fine-tuning: data (``ftdata``), training under DeepSpeed via Accelerate (``trainer``,
``loop``, ``checkpoint``, ``accel``, ``lora``), and adapter merging (``merge``).

    hsd ftdata --config F [--out DIR]
    torchrun --nproc_per_node N -m hsd.cli train --config F [--data DIR] [--run-dir DIR]
    hsd merge --adapter RUN/adapter --out DIR

Nothing heavy is imported here: ``hsd --help`` and the job classes stay light.
"""
