# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-id,-colab,-outputId,-executionInfo
#     notebook_metadata_filter: kernelspec,accelerator,colab.gpuType,-jupytext.text_representation.jupytext_version,-language_info.version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 15 · Learning from rewards: GRPO and DPO on answers a program checks
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/scratchlm/scratchlm/blob/main/notebooks/15_rl.ipynb)
#
# Lesson 14 taught a base model to answer by imitation: it was shown the right answer and trained to copy it.
# After supervised fine-tuning, today's pipelines tune the model from *feedback* on its own answers: a reward a
# program computes (is the answer right?) or a preference between two answers. The model samples, the sample is
# judged, and the model moves towards what was judged good. Nothing new is shown to it; what it already produces
# sometimes is made more likely. That sentence is the whole lesson, and it has a sharp consequence we will
# measure: reinforcement can only raise what the model already gets right *some* of the time.
#
# **What you will build**
#
# 1. the starting point measured: the SFT model of lesson 14, per skill, greedy accuracy with 95% intervals,
#    pass@1 and pass@k from sampled answers, and the skills where sampling finds answers greedy decoding misses;
# 2. from REINFORCE to GRPO one piece at a time: the policy gradient, a baseline (and what it does to the
#    gradient's noise, measured), group normalisation, the probability ratio and its clip, the k3 estimate of the KL to
#    the reference; each by hand and asserted equal to `scratchlm.posttraining`;
# 3. from the KL-regularised reward objective to DPO's loss, in closed form on a small example, then on pairs of
#    the model's own answers;
# 4. GRPO, DPO and a control (more SFT at equal compute) on the SFT model: accuracy with intervals, pass@1 and
#    pass@k, reward, KL and answer-length curves;
# 5. GRPO without its KL term and with a learning rate too high, and a chat before and after.
#
# `python -m scratchlm rl --sft CKPT --method grpo|dpo` runs the same training from the command line.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # on Colab, install the course library from its repository
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", "scratchlm @ git+https://github.com/scratchlm/scratchlm"]
    )

import torch

from scratchlm.runtime import configure_threads, get_device, pick, run_mode

device = get_device()
configure_threads(max_threads=1)  # small models: a second thread gains little, and on shared cores it costs a lot
MODE = run_mode(device)  # "smoke" in CI, "cpu" on a laptop, "gpu" on Colab
print(f"device={device.type} mode={MODE} torch={torch.__version__}")

# %%
import copy
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch.nn.functional as F
from tqdm.auto import tqdm

from scratchlm import checkpoint
from scratchlm.cli.chat import Chat
from scratchlm.errors import DataError
from scratchlm.posttraining import (
    SKILLS,
    GRPOObjective,
    GRPOTargets,
    SequenceBatch,
    answer,
    clipped_objective,
    dpo_loss,
    group_advantages,
    grpo_loss,
    held_out_items,
    kl_k3,
    masked_mean,
    most_common_answer_accuracy,
    pass_at_k,
    preference_pairs,
    rollout,
    sft,
    task_accuracy,
    token_logprobs,
    training_items,
)
from scratchlm.posttraining.recipe import RECIPES, lesson_models
from scratchlm.posttraining.rl import RL_TRAIN, RLConfig, prepare_rl
from scratchlm.training import run_training, train_step

ROOT = Path("out") / "lesson15" / MODE
N_TEST = pick(smoke=4, cpu=100, gpu=200)  # held-out items per skill for every accuracy below
N_SAMPLES, K = pick(smoke=(4, 4), cpu=(16, 8), gpu=(32, 16))  # sampled answers per item, and the k of pass@k
MAX_NEW = 8  # the longest answer is 6 letters or 4 digits, then <|end|>

lesson14 = Path("out") / "lesson14" / MODE
found = {p: p.stat().st_mtime_ns for p in (lesson14 / "base" / "ckpt.pt", lesson14 / "sft" / "ckpt.pt") if p.is_file()}
paths = lesson_models(MODE)  # lesson 14's base and SFT models: found if lesson 14 has run, else trained here
assert all(p.stat().st_mtime_ns == stamp for p, stamp in found.items()), "a finished lesson-14 model was retrained"
sft_model, tokenizer = checkpoint.load_model(paths.sft)
test_items = held_out_items(N_TEST)
print(f"SFT model: {paths.sft} ({'found' if len(found) == 2 else 'trained here'}), "
      f"{sft_model.num_parameters():,} parameters; {N_TEST} held-out items per skill")  # fmt: skip

# %% [markdown]
# ## 1. What the SFT model gets right, greedily and by sampling
#
# Three numbers per skill, on the same held-out items:
#
# - **greedy accuracy**: the most likely answer, right or wrong, with its 95% Wilson interval;
# - **pass@1**: the chance that one answer sampled at temperature 1 is right (the mean over items of the share
#   of its N samples that are right), with a 95% interval from the spread over items;
# - **pass@k**: the chance that at least one of k sampled answers is right (the unbiased estimator of lesson 14,
#   from the same N samples per item).
#
# Beside them, what no skill at all scores: always giving the skill's most common answer (greedy), and guessing
# uniformly among the skill's answers (pass@1 and pass@k). The gap between pass@k and pass@1 is what
# reinforcement can work with: a right answer the model samples now and then is one it can be taught to give
# every time. Where pass@k is near 0 there is nothing to reinforce; where pass@1 is near 1 there is nothing left
# to gain; and where pass@k is high only because there are few answers to guess from, a right answer is luck,
# not a skill to strengthen.


# %%
def mean_interval(values):
    """Mean and the half-width of its 95% normal interval (1.96 standard errors over the values)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / max(n - 1, 1)
    return mean, 1.96 * math.sqrt(var / n)


def measure(model, tokenizer, items=test_items, seed=0):
    """Per skill: greedy Accuracy, pass@1 and pass@K as (mean, half-width) from N_SAMPLES answers per item."""
    greedy = task_accuracy(model, tokenizer, items, max_new_tokens=MAX_NEW)
    per_item = {skill: {"pass@1": [], f"pass@{K}": []} for skill in greedy}
    for skill in tqdm(greedy, desc="sampling", leave=False):
        of_skill = [item for item in items if item.skill == skill]
        repeated = [item for item in of_skill for _ in range(N_SAMPLES)]
        replies = answer(model, tokenizer, repeated, temperature=1.0, seed=seed, max_new_tokens=MAX_NEW)
        for j, item in enumerate(of_skill):
            right = sum(item.verify(r) for r in replies[j * N_SAMPLES : (j + 1) * N_SAMPLES])
            per_item[skill]["pass@1"].append(right / N_SAMPLES)
            per_item[skill][f"pass@{K}"].append(pass_at_k(N_SAMPLES, right, K))
    return {s: {"greedy": greedy[s], "per item": per_item[s]["pass@1"], **{m: mean_interval(v) for m, v in per_item[s].items()}}
            for s in greedy}  # fmt: skip


def guessing(items):
    """Per skill, pass@1 and pass@K of a guesser that picks uniformly among the skill's distinct answers."""
    out = {}
    for s in SKILLS:
        m = len({i.answer for i in items if i.skill == s})
        out[s] = (1 / m, 1 - (1 - 1 / m) ** K)
    return out


def show(results):
    floor = most_common_answer_accuracy(test_items)  # what always giving the skill's most common answer scores
    guess = guessing(test_items)
    print(f"{'':12s}" + "".join(f"{s:>34s}" for s in SKILLS))
    print(f"{'no skill':12s}" + "".join(f"{floor[s]!s:>34s}" for s in SKILLS) + "  most common answer")
    for j, metric in enumerate(("pass@1", f"pass@{K}")):
        print(f"{'':12s}" + "".join(f"{guess[s][j]:>34.2f}" for s in SKILLS) + f"  {metric} of a uniform guess")
    for name, scores in results.items():
        for metric in ("greedy", "pass@1", f"pass@{K}"):
            cells = []
            for s in SKILLS:
                v = scores[s][metric]
                cells.append(f"{v!s:>34s}" if metric == "greedy" else f"{v[0]:>26.2f} ± {v[1]:.2f}")
            print(f"{name if metric == 'greedy' else '':12s}" + "".join(f"{c:>34s}" for c in cells) + f"  {metric}")


t0 = time.perf_counter()
results = {"SFT": measure(sft_model, tokenizer)}
show(results)
print(
    f"({time.perf_counter() - t0:.0f} s for {len(test_items)} greedy and {len(test_items) * N_SAMPLES} sampled answers)"
)

# %% [markdown]
# Where should reinforcement be spent? A group of k answers to one item teaches something only when some are
# right and some wrong (section 2 shows why: otherwise every advantage is zero), and only when the right ones are
# right for a reason. The rule below trains on the skills whose pass@k exceeds pass@1 by at least 0.1 and whose
# pass@1 is more than twice a guesser's; the rollouts of every run below are drawn from those skills alone, so no
# compute goes to groups that are all right, all wrong, or right by luck.

# %%
sft_scores, guess = results["SFT"], guessing(test_items)
gap = {s: sft_scores[s][f"pass@{K}"][0] - sft_scores[s]["pass@1"][0] for s in SKILLS}
knows = {s: sft_scores[s]["pass@1"][0] > 2 * guess[s][0] for s in SKILLS}
TARGET = [s for s in SKILLS if knows[s] and gap[s] >= 0.1] or [max(SKILLS, key=gap.get)]
for s in SKILLS:
    print(f"{s:8s} pass@{K} - pass@1 = {gap[s]:.2f}, pass@1 {'above' if knows[s] else 'not above'} twice a guess's"
          + ("   <- trained on" if s in TARGET else ""))  # fmt: skip

# %% [markdown]
# What the table says, skill by skill:
#
# - **count** looks like the best candidate (pass@8 0.88 against pass@1 0.26) and is the worst: the SFT model is
#   at chance. Its greedy accuracy, 23% [16%, 32%], is below the 30% of always answering the most common count,
#   and its pass@1 and pass@8 are a uniform guesser's (0.25 and 0.90). With four possible answers, eight tries
#   find the right one by luck; reinforcing a lucky guess teaches nothing about counting.
# - **reverse** is solved: greedy 100% [96%, 100%], pass@1 0.99. Nothing left to gain.
# - **add** has nothing to reinforce: pass@8 0.04. No sample is right often enough to be made more likely.
# - **sort** is the one skill with both: the model knows it (pass@1 0.69 ± 0.06, far above a guesser's 0.01) and
#   samples right answers it does not give every time (pass@8 0.92 ± 0.05, greedy 83% [74%, 89%]).
#
# So every run below rolls out sort items only, and is judged on all four skills (what it costs the others).

# %% [markdown]
# ## 2. From REINFORCE to GRPO
#
# The model is a policy π: given a prompt it samples an answer y, token by token, and a program returns a reward
# r(y), here 1 for a right answer closed by `<|end|>` and 0 otherwise. We want to raise the expected reward
# J = E_{y~π}[r(y)]. Its gradient is the **policy gradient** (REINFORCE, Williams 1992):
#
#     ∇J = E_{y~π}[ r(y) ∇ log π(y) ],    log π(y) = Σ_t log π(y_t | prompt, y_<t)
#
# so a loss whose gradient estimates it from samples is  -mean_i r_i log π(y_i). Nothing is differentiated
# through the reward: the verifier can be any program.
#
# `rollout` samples k answers to each of a few training items (batched, with the KV cache) and scores them, and
# returns each answer's per-token log-probabilities under the policy and under the reference (here both are the
# SFT model).

# %%
stream_ = training_items(seed=7, skills=TARGET)
probe_items = [next(stream_) for _ in range(pick(smoke=4, cpu=16, gpu=32))]
GROUP = 8
r = rollout(sft_model, sft_model, tokenizer, probe_items, k=GROUP, max_new_tokens=MAX_NEW, seed=0)
for i in range(2):
    print(f"{probe_items[i].question!r} (answer {probe_items[i].answer!r})")
    rows = range(i * GROUP, (i + 1) * GROUP)
    print("   ", [r.texts[row] + ("  ✓" if r.correct[row] else "") for row in rows])
print(f"rewards {tuple(r.group_rewards.shape)}: {r.rewards.mean():.2f} on average; "
      f"{int(((r.group_rewards.sum(1) > 0) & (r.group_rewards.sum(1) < GROUP)).sum())} of {len(probe_items)} "
      f"groups hold both a right and a wrong answer")  # fmt: skip

# %% [markdown]
# **A baseline.** Since E[∇ log π(y)] = 0 (the probabilities sum to one), subtracting any constant b from the
# reward leaves the gradient's expectation unchanged and can change its noise: with 0/1 rewards, REINFORCE
# raises the probability of every right answer even in a group where every answer is right, a push that only
# cancels on average. GRPO (Shao et al., 2024) takes b = the mean reward of the item's own group of k answers,
# and optionally divides by the group's standard deviation, so every item's advantages have the same scale:
#
#     A_i = (r_i - mean(r_group)) / std(r_group)
#
# A group whose answers are all right or all wrong has zero advantages: it teaches nothing. By hand, then the
# library's `group_advantages`:

# %%
rewards = r.group_rewards
centred = rewards - rewards.mean(dim=1, keepdim=True)
spread = ((rewards - rewards.mean(dim=1, keepdim=True)) ** 2).mean(dim=1, keepdim=True).sqrt()
normalised = centred / (spread + 1e-6)
torch.testing.assert_close(normalised, group_advantages(rewards))
torch.testing.assert_close(centred, group_advantages(rewards, scale=False))
print("rewards   ", rewards[0].tolist())
print("advantages", [round(a, 2) for a in normalised[0].tolist()])

# %% [markdown]
# Does the baseline make one batch's gradient less noisy? Each variant below is a gradient estimate from one batch
# of rollouts; over several independent batches, the **signal-to-noise ratio** |mean gradient|² / mean |gradient
# - mean gradient|² says how much of one batch's gradient is direction rather than noise (a ratio, so the scale of
# the advantages does not matter). The loss is averaged over answer tokens, as the library's is. Then the constant
# baseline that minimises the variance, b* = E[r |∇ log π(y)|²] / E[|∇ log π(y)|²]: a reward average weighted by
# the size of each answer's gradient.


# %%
def flat_gradient(model, loss):
    model.zero_grad()
    loss.backward(retain_graph=True)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


variants = {
    "REINFORCE: r": lambda rw: rw,
    "baseline: r - mean": lambda rw: group_advantages(rw, scale=False),
    "GRPO: (r - mean) / std": lambda rw: group_advantages(rw),
}
grad_model = copy.deepcopy(sft_model).train()
gradients = {name: [] for name in variants}
for batch_seed in tqdm(range(pick(smoke=3, cpu=8, gpu=8)), desc="gradients"):
    b = rollout(sft_model, sft_model, tokenizer, probe_items, k=GROUP, max_new_tokens=MAX_NEW, seed=100 + batch_seed)
    logprobs = token_logprobs(grad_model, b.batch.x, b.batch.y)
    for name, advantage in variants.items():
        a = advantage(b.group_rewards).reshape(-1, 1)
        gradients[name].append(flat_gradient(grad_model, -masked_mean(logprobs * a, b.batch.mask)))
for name, grads in gradients.items():
    g = torch.stack(grads)
    signal = g.mean(0).pow(2).sum()
    noise = (g - g.mean(0)).pow(2).sum(1).mean()
    print(f"{name:24s} signal-to-noise {signal / noise:.3f}")

# the constant baseline of least variance, b* = E[r |grad log pi|^2] / E[|grad log pi|^2], on the last batch
sizes = []
for row in range(b.batch.x.size(0)):
    one = (token_logprobs(grad_model, b.batch.x[row : row + 1], b.batch.y[row : row + 1]) * b.batch.mask[row]).sum()
    sizes.append(flat_gradient(grad_model, one).pow(2).sum().item())
right = [size for size, ok in zip(sizes, b.correct.tolist(), strict=True) if ok]
wrong = [size for size, ok in zip(sizes, b.correct.tolist(), strict=True) if not ok]
b_star = sum(right) / sum(sizes)
print(f"|grad log pi(y)|^2: {sum(right) / max(len(right), 1):.1f} for a right answer, {sum(wrong) / max(len(wrong), 1):.1f} "
      f"for a wrong one; mean reward {b.rewards.mean():.2f}, least-variance baseline b* {b_star:.2f}")  # fmt: skip

# %% [markdown]
# The baseline did not make one batch's gradient less noisy here; it made it noisier: a signal-to-noise ratio of
# 8.7 with the raw reward, 1.5 with the group mean subtracted (1.5 normalised too). The last line says why. A
# wrong answer is one the model finds unlikely, and the gradient of an unlikely answer's log-probability is large:
# 25,921 against 282 for a right one, about ninety times. The constant baseline of least variance weighs each
# reward by that size, so it sits near the reward of the wrong answers, b* = 0.07, where the mean reward is 0.88.
# On a model this sure of itself the raw reward is already near the best constant baseline, and subtracting the
# mean multiplies the wrong answers' large gradients by -0.88 instead of 0. What the group baseline buys is not
# less noise but the right zero: a group whose answers are all right stops sharpening them further, and each
# item's advantages are measured against what the model already does on that item.

# %% [markdown]
# **Several updates per batch: the ratio and its clip.** Sampling is the expensive part, so GRPO takes more than
# one optimizer step on each batch of rollouts. After the first, the policy π is no longer π_old, the one that
# sampled; the importance ratio ρ_t = π(y_t) / π_old(y_t) corrects for that, and PPO's clip (Schulman et al.,
# 2017) stops the objective from rewarding a move of ρ beyond [1 - ε, 1 + ε]:
#
#     objective_t = min(ρ_t A, clip(ρ_t, 1 - ε, 1 + ε) A)
#
# At the first update ρ = 1, nothing is clipped, and the gradient is exactly REINFORCE's with the group
# advantages (asserted below on the real batch). Then one optimizer step, and the clipped objective by hand
# against `clipped_objective`:

# %%
policy = copy.deepcopy(sft_model).train()
targets = GRPOTargets.from_rollouts(r)
advantages = targets.advantages
first = grpo_loss(token_logprobs(policy, r.batch.x, r.batch.y), r.logprobs, r.ref_logprobs, advantages, r.batch.mask)
by_reinforce = -masked_mean(token_logprobs(policy, r.batch.x, r.batch.y) * advantages[:, None], r.batch.mask)
torch.testing.assert_close(flat_gradient(policy, first), flat_gradient(policy, by_reinforce))

LR = pick(smoke=1e-3, cpu=1e-4, gpu=1e-4)
optimizer = torch.optim.AdamW(policy.parameters(), lr=10 * LR, weight_decay=0.0)  # one big step, to see the clip
objective = GRPOObjective(policy, clip=0.2, kl_coef=0.0)
train_step(objective, optimizer, (r.batch.x, targets))
with torch.no_grad():
    new = token_logprobs(policy.eval(), r.batch.x, r.batch.y)
ratio = torch.exp(new - r.logprobs)
a = advantages[:, None]
by_hand = torch.minimum(ratio * a, torch.clamp(ratio, 0.8, 1.2) * a) * r.batch.mask
torch.testing.assert_close(by_hand, clipped_objective(new, r.logprobs, advantages, r.batch.mask, clip=0.2))
on = r.batch.mask.bool()
clipped = ((ratio > 1.2) & (a > 0)) | ((ratio < 0.8) & (a < 0))
print(f"after one step: ratios in [{ratio[on].min():.2f}, {ratio[on].max():.2f}], "
      f"{(clipped & on).sum() / on.sum():.0%} of answer tokens past the clip (their gradient is zero)")  # fmt: skip

# %% [markdown]
# **Staying near the reference: the KL penalty.** Without a brake, the policy can drift far from the SFT model
# that made it fluent. GRPO subtracts β KL(π || π_ref) from the objective, estimated per sampled token with
# Schulman's k3 = exp(q) - q - 1, q = log π_ref(y_t) - log π(y_t): always ≥ 0, and its mean under π is exactly the
# KL (E_π[exp(q)] = 1). The plain estimate k1 = -q is unbiased too but often negative on a few samples. Both
# against the exact KL, which a small vocabulary lets us compute at each answer position from the two full
# next-token distributions:

# %%
own = rollout(policy, sft_model, tokenizer, probe_items, k=GROUP, max_new_tokens=MAX_NEW, seed=1)  # pi's samples
with torch.no_grad():
    logp_all = F.log_softmax(policy(own.batch.x)[0].float(), dim=-1)
    ref_all = F.log_softmax(sft_model(own.batch.x)[0].float(), dim=-1)
exact = (logp_all.exp() * (logp_all - ref_all)).sum(-1)
q_own = own.ref_logprobs - own.logprobs
k3_own = torch.exp(q_own) - q_own - 1
torch.testing.assert_close(k3_own * own.batch.mask, kl_k3(own.logprobs, own.ref_logprobs) * own.batch.mask)
mine = own.batch.mask.bool()
print(f"on the policy's own samples, mean per answer token: exact KL {masked_mean(exact, own.batch.mask):.4f}, "
      f"k3 {masked_mean(k3_own, own.batch.mask):.4f}, k1 {masked_mean(-q_own, own.batch.mask):.4f}; "
      f"k3 >= 0 everywhere: {bool((k3_own[mine] >= 0).all())}, k1 < 0 on {((-q_own)[mine] < 0).float().mean():.0%} "
      "of tokens")  # fmt: skip
q = r.ref_logprobs - new  # the same estimate on the SFT model's samples, where the policy may give a token ~0
k3 = torch.exp(q) - q - 1
print(f"on the SFT model's samples: k3 {masked_mean(k3, r.batch.mask):.4f}, largest term {k3[on].max():.1f}")

# %% [markdown]
# On the policy's own samples, k3 (1.352) and k1 (1.398) both estimate the exact 1.495 nats per token (one step
# at ten times the run's learning rate, from a fresh Adam, moved the policy that far: section 4's warmup is the
# cure), and k3 is never below zero where k1 is negative on 49% of the tokens. On the SFT model's samples the same
# formula gives 10,855, one token's term alone 6.5 million: where the policy has all but ruled out a token the
# reference sampled, exp(q) explodes. k3 estimates the KL under the policy's own samples, which is how a run uses
# it (every batch is sampled by the policy being trained, and moved a little by two small steps). Put together, the GRPO loss is minus the clipped objective with the penalty, averaged over every
# answer token of the batch (here on the first batch, as the second update on it would compute it):

# %%
beta = 0.05
by_hand_loss = -masked_mean(by_hand - beta * k3, r.batch.mask)
library_loss = grpo_loss(new, r.logprobs, r.ref_logprobs, advantages, r.batch.mask, clip=0.2, kl_coef=beta)
torch.testing.assert_close(by_hand_loss, library_loss)
print(f"GRPO loss {library_loss:.4f} (clipped objective {masked_mean(by_hand, r.batch.mask):.4f}, "
      f"KL penalty {beta} x {masked_mean(k3, r.batch.mask):.4f})")  # fmt: skip

# %% [markdown]
# ## 3. From the KL-regularised objective to DPO
#
# The objective GRPO climbs with its penalty, max_π E_π[r] - β KL(π || π_ref), has a closed-form maximiser:
#
#     π*(y) = π_ref(y) exp(r(y) / β) / Z,    Z = Σ_y π_ref(y) exp(r(y) / β)
#
# and at π* the objective equals β log Z. Check both on a small case: six candidate answers with reference
# probabilities and rewards, π* by the formula, its objective against a thousand other distributions.

# %%
gen = torch.Generator().manual_seed(0)
pi_ref = torch.softmax(torch.randn(6, generator=gen), 0)
reward = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
beta_dpo = 0.5


def regularised(pi):
    return (pi * reward).sum() - beta_dpo * (pi * (pi / pi_ref).log()).sum()


Z = (pi_ref * torch.exp(reward / beta_dpo)).sum()
pi_star = pi_ref * torch.exp(reward / beta_dpo) / Z
others = torch.softmax(torch.randn(1000, 6, generator=gen) * 2, dim=1)
assert all(regularised(p) <= regularised(pi_star) for p in others)
torch.testing.assert_close(regularised(pi_star), beta_dpo * Z.log())
print(f"π_ref {[round(p, 2) for p in pi_ref.tolist()]}\nπ*    {[round(p, 2) for p in pi_star.tolist()]}")
print(
    f"objective at π*: {regularised(pi_star):.4f} = β log Z; best of 1,000 others: {max(regularised(p) for p in others):.4f}"
)

# %% [markdown]
# Turned around, the formula says any policy *implies* a reward: r(y) = β log(π(y) / π_ref(y)) + β log Z. We
# never know Z, but a preference compares two answers to the same prompt, and Z cancels in the difference. The
# Bradley-Terry model of a preference, P(chosen ≻ rejected) = σ(r_c - r_r), then becomes a loss on the policy
# alone (Rafailov et al., 2023):
#
#     L_DPO = -log σ( β [ (log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r)) ] )
#
# with log π(y) the summed log-probabilities of the answer's tokens. No reward model, no sampling during
# training: pairs are enough. Ours come from the SFT model's own samples: for an item with a right and a wrong
# answer among its k, the right one is chosen (`preference_pairs`). The loss by hand, for the policy after the
# one step above, against `dpo_loss`:

# %%
implied = beta_dpo * (pi_star / pi_ref).log()
torch.testing.assert_close(implied[0] - implied[1], reward[0] - reward[1])  # Z cancels in a difference
pairs, ref_sums = preference_pairs(r)
if pairs.x.size(0) == 0:  # CI's smoke-test model is never right: pair its first two answers so the check runs
    pairs = SequenceBatch(r.batch.x[:2], r.batch.y[:2], r.batch.mask[:2])
    ref_sums = r.ref_logprobs[:2].sum(1)
P = pairs.x.size(0) // 2
with torch.no_grad():
    sums = (token_logprobs(policy, pairs.x, pairs.y) * pairs.mask).sum(1)
margins = 0.1 * ((sums[:P] - ref_sums[:P]) - (sums[P:] - ref_sums[P:]))
by_hand_dpo = -F.logsigmoid(margins).mean()
stats = dpo_loss(sums[:P], sums[P:], ref_sums[:P], ref_sums[P:], beta=0.1)
torch.testing.assert_close(by_hand_dpo, stats.loss)
print(f"{P} pairs from {len(probe_items)} items x {GROUP} answers: DPO loss {stats.loss:.4f} (log 2 = "
      f"{math.log(2):.4f} when policy = reference), implied reward margin {stats.margin:.4f}, "
      f"accuracy {stats.accuracy:.0%}")  # fmt: skip

# %% [markdown]
# ## 4. GRPO on the SFT model
#
# The run: each batch of rollouts is `ITEMS` training items of the chosen skills with k = 8 answers each,
# sampled at temperature 1 from the policy as it is; two optimizer steps per batch (so the ratio and the clip
# matter at the second); KL coefficient 0.05; the learning rate of the end of SFT (1e-4), reached after a short
# warmup. The warmup matters more than it looks: Adam's first step moves *every* weight by about the learning rate
# whatever the size of its gradient, and a policy gradient from one batch is noisy (section 2: a signal-to-noise
# ratio of 1.5), so a cold start at full rate mostly perturbs the SFT model. Everything goes through
# `train`'s loop and `train_step` (`prepare_rl` + `run_training`), with a checkpoint in `out/lesson15/`: the same
# run as `python -m scratchlm rl --sft ... --method grpo --skills sort --warmup-iters 10 ...`.

# %%
ITEMS = pick(smoke=4, cpu=32, gpu=64)
STEPS = pick(smoke=4, cpu=60, gpu=400)
EVAL_EVERY = pick(smoke=2, cpu=30, gpu=100)
WARMUP = pick(smoke=0, cpu=10, gpu=10)  # Adam's first steps move every weight by about lr, noise or not


def rl_config(name, **changes):
    folder = ROOT / name
    train = RL_TRAIN.replace(max_iters=STEPS, eval_interval=EVAL_EVERY, learning_rate=LR, min_lr=LR,
                             warmup_iters=WARMUP, seed=0, out_dir=str(folder),
                             resume=(folder / "ckpt.pt").is_file())  # fmt: skip
    config = RLConfig(sft=str(paths.sft), method="grpo", skills=",".join(TARGET), items=ITEMS, k=GROUP,
                      updates=2, max_new_tokens=MAX_NEW, kl_coef=0.05, val_per_skill=pick(smoke=2, cpu=25, gpu=50),
                      train=train)  # fmt: skip
    return config.replace(**changes)


def run_rl(config):
    """Train (or find) a run; returns the trained policy, its per-step statistics, evaluations and seconds."""
    run = prepare_rl(config)
    t0 = time.perf_counter()
    result = run_training(run)
    return run.model.eval(), run.step_stats, result.metrics, time.perf_counter() - t0


runs = {"GRPO": run_rl(rl_config("grpo"))}
grpo_model, grpo_stats, grpo_metrics, grpo_seconds = runs["GRPO"]
print(f"GRPO: {STEPS} steps ({STEPS // 2} batches of {ITEMS} x {GROUP} answers) in {grpo_seconds:.0f} s")
print("held-out greedy accuracy during training (all skills, "
      f"{rl_config('grpo').val_per_skill} items each):", [f"{m['val_accuracy']:.2f}" for m in grpo_metrics])  # fmt: skip


# %%
def smooth(values, width=10):
    out = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


def plot_curves(runs_to_plot, title):
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    for name, (_, stats, _, _) in runs_to_plot.items():
        steps = [s["step"] for s in stats]
        for ax, key, label in zip(axes, ("reward", "kl", "answer_length"),
                                  ("mean reward of the batch", "KL to the SFT model (k3, per token)",
                                   "answer length (tokens, <|end|> included)"), strict=True):  # fmt: skip
            ax.plot(steps, smooth([s[key] for s in stats]), label=name)
            ax.set_xlabel("step")
            ax.set_ylabel(label)
    axes[0].legend()
    fig.suptitle(title)
    plt.show()


plot_curves(runs, f"GRPO on {', '.join(TARGET)} (moving average over 10 steps)")
first, last = grpo_stats[: STEPS // 10 or 1], grpo_stats[-(STEPS // 10 or 1) :]
for key in ("reward", "kl", "answer_length"):
    print(f"{key:14s} first tenth {sum(s[key] for s in first) / len(first):.3f}  "
          f"last tenth {sum(s[key] for s in last) / len(last):.3f}")  # fmt: skip


def reward_slope(stats):
    """Least-squares slope of the batches' mean reward against the step, and the half-width of its 95% interval."""
    xs, ys = [s["step"] for s in stats[::2]], [s["reward"] for s in stats[::2]]
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True)) / max(n - 2, 1)
    return slope, 1.96 * math.sqrt(residual / sxx)


slope, half = reward_slope(grpo_stats)
print(f"training reward's trend: {100 * slope:+.3f} ± {100 * half:.3f} per 100 steps (95%)")

# %% [markdown]
# Sixty steps, 30 batches, 7,680 sampled answers in 103 s. The batch reward went from 0.776 in the first tenth
# of the run to 0.833 in the last, but the fitted trend, +0.031 ± 0.133 per 100 steps, cannot be told from zero:
# with 32 items per batch the reward of one batch moves by more than the run gains. The KL to the SFT model grew
# from 0.001 to 0.093 per answer token, and the length of the answers did not change (5.38 to 5.48 tokens: a
# sorted word is as long as the word). Held-out greedy accuracy over all four skills stayed at 0.47-0.49. Whether
# sort improved is for section 6, on held-out items.

# %% [markdown]
# ## 5. DPO on pairs of the model's own answers, and more SFT at equal compute
#
# DPO gets the same rollouts budget: each batch is sampled from the current policy exactly as GRPO's, but only
# the items with a right and a wrong answer yield pairs, and the loss is DPO's (β = 0.1).
#
# The control asks whether the reward was needed at all: what do as many more steps of plain SFT on the same
# skills buy? Equal compute is counted in tokens through the network, a forward pass counting one third of a
# forward-and-backward one (the backward pass costs about twice the forward): a GRPO batch of B x T tokens is
# sampled (about one forward pass, with the KV cache) and scored by the policy and the reference (two more), one
# training pass's worth, and each of its two updates is one training pass. So the compute of the run is
#
#     C = Σ_batches B·T  +  Σ_steps B'·T   (tokens of training passes; B' the rows trained on, all of them for GRPO)
#
# and an SFT step (16 packed windows of 96 tokens) is 1,536 of them. The control continues the SFT model for
# C / 1,536 steps on conversations of the trained skills only, at GRPO's learning rate.

# %%
try:
    runs["DPO"] = run_rl(rl_config("dpo", method="dpo", beta=0.1))
except DataError as e:  # CI's smoke-test model is never right: DPO has no pairs, and the run stops saying so
    print(e)
    runs["DPO"] = (sft_model, [], [], 0.0)
compute = sum(s["rollout_tokens"] for s in grpo_stats[::2]) + sum(s["update_tokens"] for s in grpo_stats)
sft_step_tokens = RECIPES[MODE].sft_train.batch_size * sft_model.config.block_size
control_steps = max(1, round(compute / sft_step_tokens))
print(f"GRPO compute: {compute:,} tokens of training passes = {control_steps} SFT steps of {sft_step_tokens:,}")

ROOT.mkdir(parents=True, exist_ok=True)
control_data = ROOT / "control.jsonl"
conversations = training_items(seed=1, skills=TARGET)
control_data.write_text("".join(json.dumps({"messages": next(conversations).messages()}) + "\n"
                                for _ in range(20 * control_steps + 100)))  # fmt: skip
folder = ROOT / "more-sft"
t0 = time.perf_counter()
control = sft(RECIPES[MODE].sft_config(paths.sft, data=str(control_data), out_dir=str(folder), max_iters=control_steps,
                                       eval_interval=control_steps, learning_rate=LR, min_lr=LR, warmup_iters=WARMUP,
                                       seed=1, resume=(folder / "ckpt.pt").is_file()))  # fmt: skip
control_seconds = time.perf_counter() - t0
print(f"more SFT: {control_steps} steps in {control_seconds:.0f} s (GRPO: {grpo_seconds:.0f} s, "
      f"DPO: {runs['DPO'][3]:.0f} s)")  # fmt: skip
dpo_stats = [s for s in runs["DPO"][1] if "margin" in s]
if dpo_stats:
    tenth = max(1, len(dpo_stats) // 10)
    for name, part in (("first", dpo_stats[:tenth]), ("last", dpo_stats[-tenth:])):
        print(f"DPO, {name} tenth: {sum(s['pairs'] for s in part) / len(part):.1f} pairs per batch, implied reward "
              f"margin {sum(s['margin'] for s in part) / len(part):.3f}, pair accuracy "
              f"{sum(s['pair_accuracy'] for s in part) / len(part):.0%}")  # fmt: skip
plot_curves({k: runs[k] for k in ("GRPO", "DPO")}, "GRPO and DPO (moving average over 10 steps)")

# %% [markdown]
# GRPO's 60 steps came to 1,316,352 tokens of training passes, 857 SFT steps. On the clock: GRPO 103 s, DPO 56 s
# (it trains on the pairs only, 29.3 per batch at the start of the run and 21.3 at the end, as fewer items have a
# wrong answer), the control 132 s. DPO's logged margin and pair accuracy fell (0.005 to -0.044, 51% to 37%), but
# they are measured on each batch's fresh pairs, sampled from the policy as it is then: the wrong answers it still
# samples are those it has made likelier, so the number says little about progress. Held-out items do.

# %% [markdown]
# ## 6. Before and after, on held-out items
#
# Every model on the same held-out items, greedy accuracy with its Wilson interval, pass@1 and pass@k with
# their intervals. A gain is judged twice: whether the new interval clears the old one, and the paired gain (each
# item's pass@1 after minus before, on the same items) against its own interval, which is narrower because the
# items' difficulty cancels.

# %%
results["GRPO"] = measure(grpo_model, tokenizer)
results["DPO"] = measure(runs["DPO"][0], tokenizer)
results["more SFT"] = measure(control.model, control.tokenizer)
show(results)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
names = list(results)
width = 0.8 / len(names)
for ax, metric in zip(axes, ("greedy", "pass@1", f"pass@{K}"), strict=True):
    for j, name in enumerate(names):
        values, errors = [], [[], []]
        for s in SKILLS:
            v = results[name][s][metric]
            if metric == "greedy":
                low, high = v.interval
                values.append(v.rate)
                errors[0].append(max(0.0, v.rate - low))
                errors[1].append(max(0.0, high - v.rate))
            else:
                values.append(v[0])
                errors[0].append(v[1])
                errors[1].append(v[1])
        ax.bar([i + j * width for i in range(len(SKILLS))], values, width, yerr=errors, capsize=2, label=name)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(SKILLS))], list(SKILLS))
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{metric} ({N_TEST} held-out items per skill, 95% intervals)")
axes[0].legend(fontsize=8)
plt.show()


# %%
def cleared(before, after, metric):
    """Whether `after`'s interval lies wholly above `before`'s."""
    if metric == "greedy":
        return after.interval[0] > before.interval[1]
    return after[0] - after[1] > before[0] + before[1]


for name in ("GRPO", "DPO", "more SFT"):
    for s in SKILLS:
        for metric in ("greedy", "pass@1", f"pass@{K}"):
            if cleared(results["SFT"][s][metric], results[name][s][metric], metric):
                print(f"{name}: {s} {metric} rises beyond its interval")
            if cleared(results[name][s][metric], results["SFT"][s][metric], metric):
                print(f"{name}: {s} {metric} falls beyond its interval")
print("pass@1 gain over SFT on the same items (paired: mean of per-item differences, 95% interval):")
for name in ("GRPO", "DPO", "more SFT"):
    gains = {}
    for s in SKILLS:
        before, after = results["SFT"][s]["per item"], results[name][s]["per item"]
        gains[s] = mean_interval([b - a for a, b in zip(before, after, strict=True)])
    print(f"  {name:10s}" + "".join(f"{s:>10s} {g:+.3f} ± {h:.3f}" for s, (g, h) in gains.items()))

# %% [markdown]
# **GRPO** raised sort: pass@1 from 0.69 ± 0.06 to 0.76 ± 0.06, greedy from 83% to 85%, and moved the other
# skills' pass@1 by less than 0.01. Measured on the same items, the gain in pass@1 is +0.072 ± 0.038: larger than its
# interval, so the goal of this lesson is met in that sense. Measured separately, the two intervals still
# overlap; an interval shrinks as one over the square root of the items, so scoring 400 held-out items instead of
# 100 would halve them (to about ± 0.03) and separate the two at this gain.
#
# **DPO** did nearly as well at half the time: sort pass@1 +0.051 ± 0.037, greedy 87% [79%, 92%].
#
# **More SFT at equal compute** did far better on sort, pass@1 +0.221 ± 0.053 to 0.91 and greedy 96% [90%, 98%],
# and broke reverse: greedy from 100% to 70% [60%, 78%], pass@1 from 0.99 to 0.64 (and count's pass@1 fell by
# 0.025 ± 0.020). Imitation of the right answers is the stronger teacher of a skill the model half knows; it also
# overwrites what it is not shown. GRPO and DPO move the model only where its own samples differ in reward, and
# the KL term holds it near the reference, so what they do not train they leave alone. At this budget that is the
# trade: a third of SFT's gain on the trained skill, none of its forgetting. A larger gain from GRPO needs more
# signal per step: more items per batch (one batch's reward here is noise over a trend of +0.03 per 100 steps)
# and more steps; the control says how far there is to go (0.91 on sort).

# %% [markdown]
# ## 7. Without the KL term, and with a learning rate too high
#
# Two variations of the GRPO run, everything else equal: no KL penalty (β = 0), and a learning rate ten times
# higher. The curves show reward, drift from the reference and answer length side by side with the run above.

# %%
runs["GRPO, no KL"] = run_rl(rl_config("grpo-no-kl", kl_coef=0.0))
runs["GRPO, 10x lr"] = run_rl(rl_config("grpo-high-lr", learning_rate=10 * LR, min_lr=10 * LR))
plot_curves({k: v for k, v in runs.items() if k.startswith("GRPO")}, "GRPO variations (moving average over 10 steps)")
for name in ("GRPO", "GRPO, no KL", "GRPO, 10x lr"):
    stats = runs[name][1]
    tail = stats[-(STEPS // 10 or 1) :]
    held = runs[name][2][-1]["val_accuracy"]
    print(f"{name:14s} last tenth: reward {sum(s['reward'] for s in tail) / len(tail):.3f}, "
          f"KL {sum(s['kl'] for s in tail) / len(tail):.4f}, "
          f"length {sum(s['answer_length'] for s in tail) / len(tail):.2f}; held-out greedy accuracy {held:.2f}")  # fmt: skip

# %% [markdown]
# Without the KL term, nothing shows at this budget: the reward (0.840 against 0.833) and the held-out accuracy
# (0.48 for both) are the same, and the KL to the reference even ended lower without the penalty (0.055 against
# 0.093). With β = 0.05 the penalty is small beside the advantages, and 60 steps at 1e-4 do not take the policy
# far enough for the brake to matter; reward hacking needs a reward with a loophole, and an exact verifier has
# none. Ten times the learning rate does show: the reward falls to 0.600 in the last tenth, the KL reaches 0.413
# per token, and held-out greedy accuracy over all skills drops from 0.47 to 0.12. The policy collapsed, on the
# skills it was not trained on as on the one it was.

# %% [markdown]
# ## 8. A conversation, before and after
#
# The same questions to the SFT model and to the GRPO model, greedy, through the `chat` command's conversation.

# %%
questions = ["Reverse water.", "How many e are in cheese?", "Sort the letters of planet.", "What is 218 + 407?"]
for name, model in (("SFT", sft_model), ("GRPO", grpo_model)):
    print(f"--- {name}")
    conversation = Chat(model, tokenizer, system=None, temperature=0.0, max_new_tokens=16, seed=None)
    for text in questions:
        print(f"you> {text}")
        conversation.reply(text)
        conversation.reset()

# %% [markdown]
# The two models agree on three of the four questions and are wrong on two of them (cheese has three e; 218 + 407
# is 625): neither run touched counting or adding. The sort question is the reminder that a 7-point gain in pass@1
# is a statement about a hundred words, not about each: here the SFT model sorts "planet" and the GRPO model does
# not.

# %% [markdown]
# ## Summary
#
# - The policy gradient needs no derivative of the reward: any program that says right or wrong will do. GRPO
#   builds it in four steps, each asserted equal to `scratchlm.posttraining` above: the group's mean reward as the
#   baseline (a group all right or all wrong teaches nothing), the group's spread as the scale, the probability
#   ratio with PPO's clip so a batch can be used twice, and the k3 estimate of the KL to the reference, never
#   negative and exact on average over the policy's own samples.
# - A baseline does not always lower the noise: on this confident model the raw reward's gradient had the higher
#   signal-to-noise ratio (8.7 against 1.5), because wrong answers are improbable and their gradients large
#   (25,921 against 282), which puts the least-variance baseline at 0.07, not at the mean reward 0.88. What the
#   group baseline buys is a zero where a group has nothing to teach.
# - DPO comes from the same KL-regularised objective: its maximiser π* ∝ π_ref exp(r / β) (its objective is
#   β log Z, and no other distribution tried beats it) implies a reward for every policy, and a preference between
#   two answers turns that reward into a loss on the policy alone.
# - Measure before you reinforce. pass@k well above pass@1 is needed, and not enough: count's gap was a guesser's
#   (four answers, eight tries), reverse had nothing left to gain, add nothing to reinforce. Sort was the skill
#   with room.
# - On sort, with the same held-out items before and after: GRPO +0.072 ± 0.038 in pass@1, DPO +0.051 ± 0.037,
#   and plain SFT at equal compute +0.221 ± 0.053 while it broke reverse (100% to 70% greedy). Learning from the
#   model's own samples moved less and left the other skills within 0.01; imitation moved more and overwrote what
#   it did not show.
# - Without the KL term nothing changed in 60 steps; ten times the learning rate collapsed the policy (held-out
#   accuracy 0.47 to 0.12).
#
# ## Exercises
#
# 1. Train GRPO on every skill instead of the chosen ones. How many groups per batch have a zero advantage, and
#    what does that do to the gain per second?
# 2. Set `scale_advantages=False` (Dr. GRPO's suggestion): does dividing by the group's spread help or hurt here?
# 3. Give DPO pairs chosen by a different rule (the shortest right answer over the longest wrong one). What does
#    the model learn about length?
# 4. Reward a well-formed but wrong answer with 0.1 instead of 0. Does the model learn to stop earlier, and does
#    its accuracy suffer?
