"""The loss curve of a training run: ``<run>/loss_curve.png`` from ``train_log.jsonl``."""

from __future__ import annotations

from pathlib import Path

from hsd.runs import iter_jsonl


def loss_curve(log_path: Path, out_path: Path) -> Path:
    """Train loss per step and eval loss at each evaluation, on one axis."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    train, evals = [], []
    for entry in iter_jsonl(log_path):
        if "loss" in entry:
            train.append((entry["step"], entry["loss"]))
        if "eval_loss" in entry:
            evals.append((entry["step"], entry["eval_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss (answer tokens)", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="hold-out loss", linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy")
    ax.set_title(f"{log_path.parent.parent.name}/{log_path.parent.name}")  # experiment/run
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path
