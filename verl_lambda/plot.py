"""Plots of training metrics as logged by verl (its ``file`` logger or the records of ``cpu.launch``).

Layer 2 (foundations).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from verl_lambda.toy.task import LENGTH_GAP_KEY

# (title, metric key) of each panel; panels whose metric was never logged are left out.
PANELS = (
    ("mean reward", "critic/score/mean"),
    ("mean response length (tokens)", "response_length/mean"),
    ("mean |length − target| (tokens; chain tasks)", LENGTH_GAP_KEY),
    ("λ (λ-GRPO)", "actor/lambda_grpo/lambda"),
    ("corr(weight, length)", "actor/lambda_grpo/weight_length_corr"),
    ("λ's gradient (λ-GRPO)", "actor/lambda_grpo/lambda_grad"),
    ("policy entropy", "actor/entropy"),
    ("traced log-ratio |e| max (GRPO-λ)", "actor/grpo_lambda/trace_max"),
)


def plot_training(records: Sequence[dict], out_png: str | Path, title: str = "", panels=PANELS) -> Path:
    """One panel per metric against the training step; writes ``out_png`` and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(label, key) for label, key in panels if any(key in r for r in records)]
    columns = 2
    rows = max(1, (len(shown) + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.0 * rows), squeeze=False)
    for ax, (label, key) in zip(axes.flat, shown, strict=False):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
