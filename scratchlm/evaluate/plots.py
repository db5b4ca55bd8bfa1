"""The evaluation's pictures, drawn on matplotlib Axes or Figures the caller owns (a lesson's inline figure, or
the `eval` command's files: `matplotlib.figure.Figure` needs no display and no pyplot)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from scratchlm.evaluate.calibration import Reliability
from scratchlm.evaluate.mechanistic import InductionResult


def plot_reliability(ax, reliability: Reliability, label: str = "model", color: str = "C0") -> None:
    """Reliability diagram: accuracy against mean confidence per bin (dots sized by count), the diagonal of
    perfect calibration, and the bars of the count per bin on a twin axis."""
    used = reliability.count > 0
    conf, acc = reliability.confidence[used].tolist(), reliability.accuracy[used].tolist()
    count = reliability.count[used].double()
    ax.plot([0, 1], [0, 1], ls=":", color="gray", lw=1, label="perfectly calibrated")
    sizes = (10 + 190 * count / count.max()).tolist()
    ax.plot(conf, acc, "-", color=color, lw=1)
    ax.scatter(conf, acc, s=sizes, color=color, zorder=3, label=f"{label} (ECE {reliability.ece:.3f})")
    share = ax.twinx()
    centres = ((reliability.edges[:-1] + reliability.edges[1:]) / 2).tolist()
    width = float(reliability.edges[1] - reliability.edges[0])
    shares = (reliability.count.double() / reliability.total).tolist()
    share.bar(centres, shares, width=width * 0.9, color=color, alpha=0.12)
    share.set_ylim(0, 1)
    share.set_ylabel("share of predictions", color="gray")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy (top-1 correct)")
    ax.set_zorder(share.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)


def plot_induction_scores(ax, result: InductionResult, title: str = "induction score per head") -> None:
    """Heat map of the induction score of every head (layers down, heads across), the values written in."""
    scores = result.scores
    image = ax.imshow(scores.numpy(), vmin=0, vmax=1, cmap="viridis")
    for layer in range(scores.size(0)):
        for head in range(scores.size(1)):
            value = float(scores[layer, head])
            ax.text(
                head, layer, f"{value:.2f}", ha="center", va="center", color="w" if value < 0.6 else "k", fontsize=8
            )
    ax.set(xlabel="head", ylabel="layer", title=title)
    ax.set_xticks(range(scores.size(1)))
    ax.set_yticks(range(scores.size(0)))
    ax.figure.colorbar(image, ax=ax, fraction=0.046)


def plot_repeated_loss(ax, result: InductionResult, label: str = "model", color: str = "C0") -> None:
    """Loss at each position of the repeated random sequence; the second copy starts at the dotted line."""
    half = (len(result.loss_by_position) + 1) // 2
    ax.plot(range(1, 2 * half), result.loss_by_position.tolist(), color=color, label=label)
    ax.axvline(half, color="gray", ls=":", lw=1)
    ax.set(xlabel="position of the predicted token", ylabel="loss (nats)")
    ax.grid(alpha=0.3)


def plot_attention_gallery(
    fig, patterns: torch.Tensor, labels: Sequence[str], titles: Sequence[str] | None = None, row: int = 0
) -> None:
    """Every head's attention on one input: patterns (L, B, H, T, T), a grid of L x H heat maps of batch row
    `row`, queries down and keys across, tick labels from `labels` (the tokens, made `visible`)."""
    L, _, H, T, _ = patterns.shape
    axes = fig.subplots(L, H, squeeze=False)
    step = max(1, T // 16)
    for layer in range(L):
        for head in range(H):
            ax = axes[layer][head]
            ax.imshow(patterns[layer, row, head].numpy(), cmap="Blues", vmin=0, vmax=1)
            title = titles[layer * H + head] if titles else f"layer {layer}, head {head}"
            ax.set_title(title, fontsize=8)
            ax.set_xticks(range(0, T, step), [labels[i] for i in range(0, T, step)], fontsize=6)
            ax.set_yticks(range(0, T, step), [labels[i] for i in range(0, T, step)], fontsize=6)
