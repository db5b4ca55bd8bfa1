"""Calibration: when the model says 70 %, is it right 70 % of the time?

A next-token prediction is a probability distribution; its *confidence* is the probability of its top
token, and it is *correct* when that token is the one that came. Sort predictions into bins by confidence
(0-0.1, 0.1-0.2, ...): a calibrated model's accuracy in each bin equals its mean confidence there. The
reliability diagram plots accuracy against confidence per bin; the expected calibration error (ECE, Naeini
et al. 2015, as Guo et al. 2017 use it for neural networks) is the gap between the two, averaged over bins
weighted by how many predictions fall in each:

    ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|.

Points below the diagonal (accuracy < confidence) are over-confidence, above it under-confidence. ECE depends
on the binning (equal-width bins here, the usual choice) and is biased upwards on few samples, since even a
calibrated model's accuracy in a bin scatters around its confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from scratchlm.errors import ConfigError
from scratchlm.evaluate.heldout import score_windows


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data: per equal-width confidence bin, its mean confidence, accuracy and count.

    edges: (n_bins + 1,) from 0 to 1; a bin holds confidences in (edges[b], edges[b + 1]] (the first also 0).
    Empty bins have count 0 and NaN confidence and accuracy.
    """

    edges: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor
    count: torch.Tensor

    @property
    def total(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean of |accuracy - confidence| over bins."""
        used = self.count > 0
        weights = self.count[used].double() / self.total
        return float((weights * (self.accuracy[used] - self.confidence[used]).abs()).sum())

    @property
    def max_gap(self) -> float:
        """Maximum calibration error: the worst bin's |accuracy - confidence|."""
        used = self.count > 0
        return float((self.accuracy[used] - self.confidence[used]).abs().max())

    @property
    def overconfidence(self) -> float:
        """Mean confidence minus accuracy over all predictions: > 0 over-confident, < 0 under-confident."""
        used = self.count > 0
        weights = self.count[used].double() / self.total
        return float((weights * (self.confidence[used] - self.accuracy[used])).sum())


def reliability(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 10) -> Reliability:
    """Bin predictions by confidence: confidence (N,) in [0, 1], correct (N,) bool or 0/1 -> `Reliability`."""
    confidence = torch.as_tensor(confidence, dtype=torch.float64).flatten()
    correct = torch.as_tensor(correct).flatten().to(torch.float64)
    if confidence.numel() == 0 or confidence.shape != correct.shape:
        raise ConfigError(
            f"need as many correctness flags as confidences, at least one: got {confidence.numel()} and "
            f"{correct.numel()}"
        )
    if not ((confidence >= 0) & (confidence <= 1)).all():
        raise ConfigError("confidences must be probabilities in [0, 1]")
    if n_bins < 1:
        raise ConfigError(f"n_bins must be positive, got {n_bins}")
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    # bin b holds (edges[b], edges[b + 1]]; a confidence of exactly 0 goes to the first bin
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins)
    with torch.no_grad():
        conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence)
        acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct)
    denominator = count.to(torch.float64)
    return Reliability(edges, conf_sum / denominator, acc_sum / denominator, count)


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 10) -> float:
    """ECE of predictions with these confidences and correctness, over `n_bins` equal-width bins."""
    return reliability(confidence, correct, n_bins).ece


def _top1(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, T, 3): the top token's probability, whether it is the target, and the target's probability."""
    probs = torch.softmax(logits, dim=-1)
    confidence, guess = probs.max(dim=-1)
    target_prob = probs.gather(-1, targets[..., None])[..., 0]
    return torch.stack((confidence, (guess == targets).float(), target_prob), dim=-1)


@dataclass(frozen=True)
class Predictions:
    """The model's next-token predictions over a text: per target, the top-1 probability (`confidence`),
    whether the top-1 token was the target (`correct`), the target's own probability and the context length."""

    confidence: torch.Tensor
    correct: torch.Tensor
    target_prob: torch.Tensor
    context: torch.Tensor

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean())

    def reliability(self, n_bins: int = 10) -> Reliability:
        return reliability(self.confidence, self.correct, n_bins)


def next_token_predictions(
    model: nn.Module,
    ids: torch.Tensor,
    stride: int | None = None,
    batch_size: int = 64,
    desc: str | None = None,
    *,
    block_size: int | None = None,
) -> Predictions:
    """Top-1 predictions for every token of `ids` after the first, read in `token_nats`'s windows."""
    values, context = score_windows(model, ids, _top1, stride, batch_size, desc, block_size=block_size)
    return Predictions(values[:, 0], values[:, 1].bool(), values[:, 2], context)
