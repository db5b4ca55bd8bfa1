"""GRPO and DPO: each piece against a case whose answer is known by hand."""

from __future__ import annotations

import math
import string

import pytest
import torch
import torch.nn.functional as F

from scratchlm.model import GPT, GPTConfig
from scratchlm.posttraining import add_chat_tokens, held_out_items
from scratchlm.posttraining.chat import END
from scratchlm.posttraining.dpo import DPOObjective, DPOTargets, dpo_loss, preference_pairs
from scratchlm.posttraining.grpo import (
    GRPOObjective,
    GRPOTargets,
    clipped_objective,
    group_advantages,
    grpo_loss,
    kl_k3,
    masked_mean,
)
from scratchlm.posttraining.rollouts import rollout, sequence_batch, token_logprobs
from scratchlm.tokenizers import CharTokenizer
from scratchlm.training import train_step

ALPHABET = sorted(set(string.ascii_letters + string.digits + string.punctuation + " \n"))


@pytest.fixture
def tokenizer():
    return add_chat_tokens(CharTokenizer(ALPHABET))


def tiny_gpt(vocab_size: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, pos_embedding="rope")
    return GPT(config)


# ------------------------------------------------------------------------------------------------ GRPO


def test_a_group_of_equal_rewards_has_zero_advantages():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    advantages = group_advantages(rewards)
    assert torch.equal(advantages[:2], torch.zeros(2, 3))
    # [0, 1, 1]: mean 2/3, population std sqrt(2)/3
    expected = torch.tensor([-2 / 3, 1 / 3, 1 / 3]) / (math.sqrt(2) / 3)
    assert torch.allclose(advantages[2], expected, atol=1e-5)
    assert torch.allclose(group_advantages(rewards, scale=False)[2], torch.tensor([-2 / 3, 1 / 3, 1 / 3]))


def test_with_one_update_per_batch_the_clipped_gradient_is_reinforces():
    torch.manual_seed(0)
    logprobs = torch.randn(4, 5).clamp(max=-0.1).requires_grad_()
    mask = (torch.rand(4, 5) > 0.3).float()
    advantages = torch.tensor([1.0, -0.5, 0.0, 2.0])
    grpo_loss(logprobs, logprobs.detach(), logprobs.detach(), advantages, mask).backward()
    reinforce = torch.zeros_like(logprobs, requires_grad=True)
    (-masked_mean((reinforce + logprobs.detach()) * advantages[:, None], mask)).backward()
    assert torch.allclose(logprobs.grad, reinforce.grad)


def test_the_clip_stops_the_gradient_once_the_ratio_has_moved_past_it():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.9, 0.3]])).requires_grad_()  # ratios 1.8 (past 1.2) and 0.6 (past 0.8)
    objective = clipped_objective(new, old, torch.tensor([1.0]), torch.ones(1, 2), clip=0.2)
    assert torch.allclose(objective, torch.tensor([[1.2, 0.6]]))  # A > 0: min(1.8, 1.2), min(0.6, 0.8)
    objective.sum().backward()
    assert new.grad[0, 0] == 0 and new.grad[0, 1] != 0  # raising a good token further gains nothing


def test_k3_averaged_under_the_policy_is_the_exact_kl():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.2, 0.6])
    exact = (p * (p / q).log()).sum()
    assert torch.allclose((p * kl_k3(p.log(), q.log())).sum(), exact)
    assert torch.equal(kl_k3(p.log(), p.log()), torch.zeros(3))
    assert (kl_k3(p.log(), q.log()) >= 0).all()


def test_the_kl_term_adds_beta_times_the_mean_k3():
    logprobs = torch.log(torch.tensor([[0.5, 0.4]]))
    ref = torch.log(torch.tensor([[0.25, 0.4]]))
    mask = torch.ones(1, 2)
    zero_advantage = torch.zeros(1)
    loss = grpo_loss(logprobs, logprobs, ref, zero_advantage, mask, kl_coef=0.1)
    # token 1: q = log 0.5, exp(q) - q - 1 = 0.5 + log 2 - 1; token 2: 0
    assert loss.item() == pytest.approx(0.1 * (0.5 + math.log(2) - 1) / 2)


# ------------------------------------------------------------------------------------------------ DPO


def test_dpo_loss_matches_a_hand_computation():
    chosen, rejected = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-3.5, -4.0]), torch.tensor([-3.0, -3.0])
    stats = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    # pair 1: 0.5 * ((-3 + 3.5) - (-4 + 3)) = 0.75; pair 2: 0.5 * ((-5 + 4) - (-2 + 3)) = -1
    hand = (math.log(1 + math.exp(-0.75)) + math.log(1 + math.exp(1.0))) / 2
    assert stats.loss.item() == pytest.approx(hand)
    assert stats.margin.item() == pytest.approx((0.75 - 1) / 2)
    assert stats.accuracy.item() == 0.5


# ------------------------------------------------------------------------------------------------ rollouts


def test_sequence_batch_masks_the_answer_targets_only():
    batch = sequence_batch([[1, 2, 3], [4, 5]], [[6, 7], [8]], pad_id=0)
    assert batch.x.tolist() == [[1, 2, 3, 6], [4, 5, 0, 0]]
    assert batch.y.tolist() == [[2, 3, 6, 7], [5, 8, 0, 0]]
    assert batch.mask.tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]


def test_rollouts_score_answers_and_take_both_models_logprobs(tokenizer):
    policy, reference = tiny_gpt(tokenizer.vocab_size, 0), tiny_gpt(tokenizer.vocab_size, 1)
    items = held_out_items(1, seed=0, skills=("reverse", "count"))
    r = rollout(policy, reference, tokenizer, items, k=3, max_new_tokens=6, temperature=1.0, seed=0)
    assert r.batch.x.shape[0] == 6 and r.group_rewards.shape == (2, 3)
    end = tokenizer.special_id(END)
    for row in range(6):
        n = int(r.batch.answer_lengths[row])
        answer = r.batch.y[row][r.batch.mask[row] == 1].tolist()
        assert len(answer) == n and (answer[-1] == end) == bool(r.ended[row])
        assert tokenizer.decode(answer[:-1] if r.ended[row] else answer) == r.texts[row]
        assert bool(r.correct[row]) == (bool(r.ended[row]) and items[row // 3].verify(r.texts[row]))
        # each row's log-probs equal those of the sequence alone (padding changes nothing), per model
        length = int(r.batch.mask[row].nonzero().max()) + 1
        x, y = r.batch.x[row : row + 1, :length], r.batch.y[row : row + 1, :length]
        for model, logprobs in ((policy, r.logprobs), (reference, r.ref_logprobs)):
            alone = token_logprobs(model.eval(), x, y)[0] * r.batch.mask[row, :length]
            assert torch.allclose(logprobs[row, :length], alone, atol=1e-5)
    assert not torch.allclose(r.logprobs, r.ref_logprobs)


def test_grpo_and_dpo_update_the_policy_through_train_step(tokenizer):
    policy, reference = tiny_gpt(tokenizer.vocab_size, 0), tiny_gpt(tokenizer.vocab_size, 0)
    items = held_out_items(1, seed=0, skills=("reverse", "count"))
    r = rollout(policy, reference, tokenizer, items, k=4, max_new_tokens=4, seed=0)
    # rewards fixed by hand so both objectives have something to learn from
    r = type(r)(**{**r.__dict__, "rewards": torch.tensor([1.0, 0, 0, 0, 0, 1, 0, 0]), "correct": torch.tensor(
        [True, False, False, False, False, True, False, False])})  # fmt: skip
    objective = GRPOObjective(policy, kl_coef=0.1)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    targets = GRPOTargets.from_rollouts(r)
    first = train_step(objective, optimizer, (r.batch.x, targets)).loss.item()
    # ratio 1 and KL 0 at the first update: the loss is minus the token-weighted mean advantage
    lengths = r.batch.answer_lengths
    assert first == pytest.approx(-(targets.advantages * lengths).sum().item() / lengths.sum().item(), abs=1e-5)
    train_step(objective, optimizer, (r.batch.x, targets))
    assert train_step(objective, optimizer, (r.batch.x, targets)).loss.item() < first

    batch, ref_sums = preference_pairs(r)
    assert batch.x.shape[0] == 4  # one pair per item
    dpo = DPOObjective(policy, beta=0.5)
    targets = DPOTargets(batch.y, batch.mask, ref_sums)
    policy.load_state_dict(reference.state_dict())
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    first = train_step(dpo, optimizer, (batch.x, targets)).loss.item()
    assert first == pytest.approx(math.log(2), abs=1e-5) and dpo.last.margin.item() == pytest.approx(0, abs=1e-5)
    for _ in range(3):
        train_step(dpo, optimizer, (batch.x, targets))
    assert dpo.last.margin.item() > 0 and dpo.last.accuracy.item() == 1.0
    assert F.logsigmoid(torch.tensor(0.0)).item() == pytest.approx(-math.log(2))


# ------------------------------------------------------------------------------------------------ the rl command


@pytest.fixture
def sft_checkpoint(tmp_path, tokenizer) -> str:
    """A chat checkpoint of a tiny GPT that tosses a coin at every token: "1" or <|end|>, whatever it has read.

    So it is sometimes right (a count whose answer is 1: "1" then <|end|>, one answer in four) and sometimes wrong:
    GRPO's groups and DPO's pairs of count items have something to learn from in nearly every batch. (An untrained
    model is right once in thousands of answers: DPO's run then drew ~2,500 batches of rollouts for 4 steps.)"""
    from scratchlm import checkpoint

    model = tiny_gpt(tokenizer.vocab_size)
    with torch.no_grad():  # the final norm outputs a constant; the tied head reads channel 0 of each embedding
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(F.one_hot(torch.tensor(0), model.config.n_embd).float())
        wte = model.transformer.wte.weight
        wte[:, 0] = -10.0
        wte[tokenizer.encode("1")[0], 0] = wte[tokenizer.special_id(END), 0] = 0.0
    path = tmp_path / "sft" / "ckpt.pt"
    checkpoint.save(path, model, tokenizer=tokenizer)
    return str(path)


RL_FAST = ["--skills", "count", "--items", "8", "--k", "8", "--updates", "2", "--eval-interval", "2",
           "--max-new-tokens", "4", "--val-per-skill", "1", "--learning-rate", "1e-2", "--min-lr", "1e-2",
           "--no-progress"]  # fmt: skip


def _steps(out) -> list[dict]:
    import json

    lines = (out / "rl_steps.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"} for line in lines]


@pytest.mark.parametrize("method", ["grpo", "dpo"])
def test_rl_logs_each_step_resumes_exactly_and_never_clobbers(method, sft_checkpoint, tmp_path, capsys):
    import json

    from scratchlm import checkpoint
    from scratchlm.cli import main

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ["--sft", sft_checkpoint, "--method", method, *RL_FAST]
    assert main(["rl", *common, "--out", str(straight), "--max-iters", "4"]) == 0
    steps = _steps(straight)
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert {"reward", "accuracy", "kl", "answer_length"} <= set(steps[0])
    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    # named for what they are, not train's losses
    assert {"batch_reward", "val_accuracy"} <= set(records[-1]) and "val_loss" not in records[-1]
    # train's fixed batch x block tokens are not what an RL step trains: rl_steps.jsonl counts those
    assert not {"tokens", "tokens_per_s"} & set(records[-1])
    assert steps[0]["rollout_tokens"] > 0 and "update_tokens" in steps[0]
    assert steps[0]["kl"] == pytest.approx(0, abs=1e-6)  # the policy starts as the reference
    assert any(0 < s["reward"] < 1 for s in steps)  # some answers right, some wrong: something to learn from
    if method == "dpo":
        assert {"pairs", "margin", "pair_accuracy"} <= set(steps[-1])

    assert main(["rl", *common, "--out", str(resumed), "--max-iters", "2"]) == 0
    assert main(["rl", *common, "--out", str(resumed), "--max-iters", "2"]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main(["rl", "--out", str(resumed), "--resume", "--max-iters", "4", "--no-progress"]) == 0
    assert _steps(resumed) == steps
    a, b = checkpoint.load(straight / "ckpt.pt"), checkpoint.load(resumed / "ckpt.pt")
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)


def test_rl_refuses_a_base_model_and_a_misaligned_eval_interval_in_one_line(tmp_path, capsys):
    from scratchlm import checkpoint
    from scratchlm.cli import main

    base = tmp_path / "base" / "ckpt.pt"
    checkpoint.save(base, tiny_gpt(len(ALPHABET)), tokenizer=CharTokenizer(ALPHABET))
    assert main(["rl", "--sft", str(base), "--out", str(tmp_path / "o"), *RL_FAST]) == 2
    assert "no chat tokens" in capsys.readouterr().err
    assert main(["rl", "--sft", str(base), "--out", str(tmp_path / "p"), "--updates", "3", "--eval-interval", "4"]) == 2
    assert "multiple of updates" in capsys.readouterr().err


def test_dpo_without_any_pair_stops_in_one_line_instead_of_sampling_forever(sft_checkpoint, tmp_path, capsys):
    from scratchlm.cli import main
    from scratchlm.posttraining.rl import DPO_DRAWS

    # one new token: no answer can be closed by <|end|> after its content, so none is right and no item has a pair
    args = ["rl", "--sft", sft_checkpoint, "--method", "dpo", *RL_FAST, "--max-new-tokens", "1"]
    assert main([*args, "--out", str(tmp_path / "dpo"), "--max-iters", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"no item with both a right and a wrong answer in {DPO_DRAWS} batches" in err and "\n" not in err
    assert (tmp_path / "dpo" / "ckpt.pt").is_file()  # the step-0 checkpoint is kept


def test_rl_rolls_out_the_chosen_skills_only_and_refuses_an_unknown_one(sft_checkpoint, tmp_path):
    from scratchlm.errors import ConfigError
    from scratchlm.posttraining.rl import RL_TRAIN, RLConfig, prepare_rl

    with pytest.raises(ConfigError, match="comma-separated list of skills"):
        RLConfig(sft=sft_checkpoint, skills="reverse,juggle")
    config = RLConfig(sft=sft_checkpoint, skills="sort,add", items=5, k=2, max_new_tokens=3,
                      train=RL_TRAIN.replace(progress=False))  # fmt: skip
    run = prepare_rl(config)
    run.next_batches()
    assert [i.skill for i in run.rollouts.items] == ["sort", "add", "sort", "add", "sort"]
    stats = run.step_stats[-1]
    assert stats["rollout_tokens"] == stats["update_tokens"] == run.rollouts.batch.x.numel()  # GRPO trains on all
