"""DPO (Rafailov et al., 2023): the KL-regularised reward objective solved in closed form, trained on pairs.

The policy that maximises E[r] - beta KL(pi || pi_ref) is pi*(y) ∝ pi_ref(y) exp(r(y) / beta), so a reward is
implied by any policy: r(y) = beta log(pi(y) / pi_ref(y)) + const. Put into the Bradley-Terry model of a
preference, P(chosen > rejected) = sigmoid(r_c - r_r), the constant cancels and the loss is

    -log sigmoid(beta [(log pi(c) - log pi_ref(c)) - (log pi(r) - log pi_ref(r))])

with log pi(y) the summed log-probs of the answer's tokens. The implicit reward margin (the bracket times beta)
and the accuracy (how often it is > 0) are what a run logs.

Pairs come from the SFT model's own samples (`preference_pairs`): for an item with a verified-correct answer and
a wrong one, the correct is chosen. `DPOObjective` wraps the policy for `train_step`: x holds the chosen
sequences then the rejected ones (2P rows), `targets` a `DPOTargets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchlm.posttraining.rollouts import Rollouts, SequenceBatch, token_logprobs


@dataclass(frozen=True)
class DPOStats:
    """loss: the mean DPO loss (0-d). margin: the mean implicit reward margin. accuracy: how often it is > 0."""

    loss: torch.Tensor
    margin: torch.Tensor
    accuracy: torch.Tensor


def dpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float
) -> DPOStats:
    """The DPO loss from summed answer log-probs, each (P,): under the policy and under the reference."""
    margins = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    return DPOStats(
        loss=-F.logsigmoid(margins).mean(),
        margin=margins.detach().mean(),
        accuracy=(margins.detach() > 0).float().mean(),
    )


@dataclass(frozen=True)
class DPOTargets:
    """Targets y (2P, T), answer mask (2P, T), and the reference's summed answer log-probs (2P,): chosen first."""

    y: torch.Tensor
    mask: torch.Tensor
    ref_sums: torch.Tensor


def preference_pairs(rollouts: Rollouts) -> tuple[SequenceBatch, torch.Tensor]:
    """From each item's k sampled answers, pairs (a correct one, a wrong one), as many as the smaller side has.

    Returns the batch (chosen rows first, then their rejected rows in the same order; P pairs, 2P rows) and the
    reference's summed log-probs of those rows (2P,). P may be 0: then no item had both a right and a wrong answer.
    """
    chosen, rejected = [], []
    for i in range(len(rollouts.items)):
        rows = range(i * rollouts.k, (i + 1) * rollouts.k)
        right = [r for r in rows if rollouts.correct[r]]
        wrong = [r for r in rows if not rollouts.correct[r]]
        for c, r in zip(right, wrong, strict=False):
            chosen.append(c)
            rejected.append(r)
    order = torch.tensor(chosen + rejected, dtype=torch.long)
    b = rollouts.batch
    batch = SequenceBatch(b.x[order], b.y[order], b.mask[order])
    return batch, rollouts.ref_logprobs[order].sum(dim=1)


class DPOObjective(nn.Module):
    """The policy seen through the DPO loss: `forward(x, targets)` -> (None, loss), what `train_step` calls.
    `last` keeps the latest step's `DPOStats` (margin and accuracy for the log)."""

    def __init__(self, policy: nn.Module, *, beta: float = 0.1):
        super().__init__()
        self.policy = policy
        self.beta = beta
        self.last: DPOStats | None = None

    def forward(self, x: torch.Tensor, targets: DPOTargets) -> tuple[None, torch.Tensor]:
        sums = (token_logprobs(self.policy, x, targets.y) * targets.mask).sum(dim=1)
        pairs = x.size(0) // 2
        ref = targets.ref_sums
        self.last = dpo_loss(sums[:pairs], sums[pairs:], ref[:pairs], ref[pairs:], self.beta)
        return None, self.last.loss
