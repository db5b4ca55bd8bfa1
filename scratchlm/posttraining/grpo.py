"""GRPO (Shao et al., 2024): policy gradient with the group's mean reward as the baseline, no value model.

From REINFORCE to GRPO, one piece at a time (lesson 15 derives each):

    advantage   A_i = r_i - mean(r of its group)              (optionally / std of the group)
    ratio       rho_t = pi(a_t) / pi_old(a_t)                  per answer token, pi_old: the policy that sampled
    objective   min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A)  maximised; the clip stops a batch being reused
                                                               far beyond the policy that produced it
    KL penalty  beta * k3(pi, pi_ref)                          k3 = exp(q) - q - 1, q = log pi_ref - log pi
                                                               (Schulman's unbiased, always >= 0 estimator)

The loss is the negated objective averaged over every answer token of the batch (a token-level mean, so a long
answer weighs by its length; GRPO's paper averages per answer first). At the first update on a batch pi = pi_old,
so the ratio is 1, nothing is clipped, and the gradient is exactly REINFORCE's: -A grad log pi
(`test_grpo`'s known case). A group whose answers all got the same reward has zero advantages: it teaches nothing.

`GRPOObjective` wraps the policy so that `train_step` (the library's one optimizer step) computes this loss:
`model(x, targets)` with `targets` a `GRPOTargets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from scratchlm.posttraining.rollouts import Rollouts, token_logprobs


def group_advantages(rewards: torch.Tensor, *, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """rewards (G, k): k answers to each of G prompts -> advantages (G, k): reward minus its group's mean,
    divided by the group's standard deviation (+ eps) when `scale` (a group of equal rewards gives zeros)."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps)


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled from pi: exp(q) - q - 1 with q = ref - logp.

    Its mean over samples of pi is exactly KL(pi || pi_ref) (E_pi[exp(q)] = 1), and each term is >= 0."""
    q = ref_logprobs - logprobs
    return torch.exp(q) - q - 1


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over the positions where `mask` is 1 (0 when the mask is empty)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def clipped_objective(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float = 0.2
) -> torch.Tensor:
    """PPO's clipped surrogate, per token: min(rho A, clip(rho, 1-clip, 1+clip) A), rho = exp(logp - old).

    logprobs, old_logprobs, mask: (B, T); advantages: (B,) one per answer. Returns (B, T) (to be maximised)."""
    ratio = torch.exp(logprobs - old_logprobs)
    a = advantages.unsqueeze(1)
    return torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a) * mask


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: float = 0.2,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """The GRPO loss: -(clipped objective - kl_coef * k3 KL to the reference), averaged over answer tokens."""
    per_token = clipped_objective(logprobs, old_logprobs, advantages, mask, clip)
    if kl_coef:
        per_token = per_token - kl_coef * kl_k3(logprobs, ref_logprobs)
    return -masked_mean(per_token, mask)


@dataclass(frozen=True)
class GRPOTargets:
    """What the loss needs besides the input ids: targets y (B, T), the answer mask, the sampling policy's and
    the reference's per-token log-probs (B, T), the advantages (B,)."""

    y: torch.Tensor
    mask: torch.Tensor
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    advantages: torch.Tensor

    @classmethod
    def from_rollouts(cls, rollouts: Rollouts, *, scale: bool = True) -> GRPOTargets:
        advantages = group_advantages(rollouts.group_rewards, scale=scale).reshape(-1)
        b = rollouts.batch
        return cls(b.y, b.mask, rollouts.logprobs, rollouts.ref_logprobs, advantages)


class GRPOObjective(nn.Module):
    """The policy seen through the GRPO loss: `forward(x, targets)` -> (None, loss), what `train_step` calls."""

    def __init__(self, policy: nn.Module, *, clip: float = 0.2, kl_coef: float = 0.0):
        super().__init__()
        self.policy = policy
        self.clip = clip
        self.kl_coef = kl_coef

    def forward(self, x: torch.Tensor, targets: GRPOTargets) -> tuple[None, torch.Tensor]:
        logprobs = token_logprobs(self.policy, x, targets.y)
        t = targets
        loss = grpo_loss(
            logprobs, t.old_logprobs, t.ref_logprobs, t.advantages, t.mask, clip=self.clip, kl_coef=self.kl_coef
        )
        return None, loss
