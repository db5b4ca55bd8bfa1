"""The training core: one declaration per option, a public train_step, a run resolved once, callbacks, any LM."""

import argparse
import copy
import dataclasses
import functools

import pytest
import torch

from scratchlm import checkpoint
from scratchlm.bigram import BigramLanguageModel
from scratchlm.cli import build_parser, main
from scratchlm.data import get_batch, load_splits
from scratchlm.errors import ConfigError, TokenizerError
from scratchlm.model import GPT, GPTConfig
from scratchlm.training import (
    Callback,
    TrainConfig,
    autocast_for,
    estimate_loss,
    make_optimizer,
    preset,
    train,
    train_step,
)


@pytest.fixture
def tiny(tiny_train_config):
    """This file's tiny runs: `tiny_train_config` with max_iters=12, eval_interval=4."""
    return functools.partial(tiny_train_config, max_iters=12, eval_interval=4)


# one declaration per option


def test_model_and_training_fields_share_no_name():
    model = {f.name for f in dataclasses.fields(GPTConfig)}
    training = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not model & training


@pytest.mark.parametrize("cls", [GPTConfig, TrainConfig])
def test_every_option_has_help_and_a_rule(cls):
    for f in dataclasses.fields(cls):
        if f.name == "model":  # the nested GPTConfig: its own fields are declared there
            continue
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
        assert f.metadata.get("rule") is not None, f"{cls.__name__}.{f.name} is not validated"


def test_every_option_is_a_train_flag():
    """Every field but the tokenizer-given vocab_size is reachable from `train`, spelled after the field."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {s for action in commands.choices["train"]._actions for s in action.option_strings}
    for cls in (GPTConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            if f.name in ("model", "vocab_size"):
                continue
            assert f"--{f.name.replace('_', '-')}" in flags, f.name
    for flag in ("--warmup-iters", "--lr-decay-iters", "--weight-decay", "--grad-clip", "--bias", "--no-bias",
                 "--rope-base", "--lr", "--out", "--no-progress"):  # fmt: skip
        assert flag in flags


def test_replace_routes_names_to_the_model_or_the_run():
    config = TrainConfig().replace(n_layer=2, rope_base=500.0, pos_embedding="rope", max_iters=7)
    assert (config.model.n_layer, config.model.rope_base, config.max_iters) == (2, 500.0, 7)
    with pytest.raises(ConfigError, match="unknown TrainConfig field"):
        TrainConfig().replace(n_layers=2)


def test_from_dict_reads_nested_and_old_flat_configs():
    config = preset("cpu", n_kv_head=2, seed=5)
    assert TrainConfig.from_dict(config.to_dict()) == config
    flat = {k: v for k, v in config.to_dict().items() if k != "model"} | {"n_layer": 4, "n_head": 4, "n_embd": 80}
    old = TrainConfig.from_dict(flat)  # checkpoints written before the model config was nested
    assert (old.model.n_embd, old.seed) == (80, 5)


def test_vocab_size_comes_from_the_tokenizer_or_pads_it():
    assert TrainConfig().model_config(65).vocab_size == 65
    assert TrainConfig().replace(vocab_size=128).model_config(65).vocab_size == 128
    with pytest.raises(ConfigError, match="smaller than the tokenizer's 65"):
        TrainConfig().replace(vocab_size=64).model_config(65)
    with pytest.raises(ConfigError, match="vocab_size is None"):
        GPT(GPTConfig())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(learning_rate=float("inf")), "learning_rate must be positive and finite"),
        (dict(seed=2**70), "seed must be an integer in [0, 2**64)"),
        (dict(betas=(0.9, 1.0)), "betas must be two numbers in [0, 1)"),
        (dict(device=3), "device must be a non-empty string"),
    ],
)
def test_training_options_are_checked_where_declared(overrides, message):
    with pytest.raises(ConfigError) as error:
        TrainConfig().replace(**overrides)
    assert message in str(error.value)


# train_step and estimate_loss


def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    generator = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 11, (200,), generator=generator)
    return model, data, generator


def test_train_step_is_forward_backward_clip_update():
    model, data, generator = _model_and_batch()
    reference = copy.deepcopy(model)
    config = TrainConfig()
    x, y = get_batch(data, 8, 4, generator)

    result = train_step(model, make_optimizer(model, config, torch.device("cpu")), (x, y), lr=0.01, grad_clip=0.5)

    optimizer = make_optimizer(reference, config, torch.device("cpu"))
    for group in optimizer.param_groups:
        group["lr"] = 0.01
    _, loss = reference(x, y)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    optimizer.step()

    assert torch.equal(result.loss, loss.detach()) and torch.equal(result.grad_norm, norm)
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert all(p.grad is not None for p in model.parameters())  # this step's gradients stay readable


def test_train_step_accumulates_micro_batches_as_one_batch():
    model, data, generator = _model_and_batch()
    twin = copy.deepcopy(model)
    (x1, y1), (x2, y2) = get_batch(data, 8, 4, generator), get_batch(data, 8, 4, generator)
    config = TrainConfig()
    a = train_step(model, make_optimizer(model, config, torch.device("cpu")), [(x1, y1), (x2, y2)], lr=0.01)
    b = train_step(
        twin, make_optimizer(twin, config, torch.device("cpu")), (torch.cat([x1, x2]), torch.cat([y1, y2])), lr=0.01
    )
    torch.testing.assert_close(a.loss, b.loss)
    assert a.grad_norm is None  # no clipping asked for
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_estimate_loss_uses_the_same_batches_every_call():
    model, data, _ = _model_and_batch()
    splits = {"train": data[:150], "val": data[150:]}
    kwargs = dict(block_size=8, batch_size=4, eval_iters=3, seed=7)
    first = estimate_loss(model, splits, **kwargs)
    assert estimate_loss(model, splits, **kwargs) == first and set(first) == {"train", "val"}
    assert model.training  # the mode it had is put back


def test_autocast_for_float32_does_nothing_and_bfloat16_casts():
    with autocast_for(torch.device("cpu"), "float32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast_for(torch.device("cpu"), "bfloat16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype must be one of"):
        autocast_for(torch.device("cpu"), "float16")


# the loop: train_step every step, callbacks, any LM


def test_train_calls_train_step_once_per_step(monkeypatch, tiny):
    from scratchlm.training import loop

    calls = []
    real = loop.train_step
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    train(tiny(max_iters=5))
    assert len(calls) == 5


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None):
        self.steps, self.records, self.stop_at = [], [], stop_at

    def on_step(self, run, result):
        self.steps.append((run.step, result.loss.item()))
        if run.step == self.stop_at:
            run.stop = True

    def on_eval(self, run, record):
        self.records.append(record)


def test_callbacks_see_every_step_and_every_evaluation(tiny):
    recorder = Recorder()
    result = train(tiny(), callbacks=[recorder])
    assert [s for s, _ in recorder.steps] == list(range(1, 13))
    assert [loss for _, loss in recorder.steps] == result.step_losses
    assert recorder.records == result.metrics


def test_a_callback_can_stop_the_run_which_evaluates_and_checkpoints(tmp_path, tiny):
    recorder = Recorder(stop_at=6)
    result = train(tiny(out_dir=str(tmp_path)), callbacks=[recorder])
    assert [m["step"] for m in result.metrics] == [0, 4, 6]
    assert checkpoint.load(tmp_path).step == 6


def test_any_language_model_trains_with_the_same_loop(text_file, tiny):
    splits = load_splits(text_file)
    torch.manual_seed(0)
    bigram = BigramLanguageModel(splits.tokenizer.vocab_size)
    result = train(tiny(max_iters=40, learning_rate=0.1), model=bigram, splits=splits)
    assert result.model is bigram and result.splits is splits
    assert result.metrics[-1]["val_loss"] < result.metrics[0]["val_loss"] - 0.3
    with pytest.raises(ConfigError, match="library's GPT only"):
        train(tiny(out_dir="somewhere"), model=bigram)


def test_the_result_keeps_the_splits(text_file, tiny):
    result = train(tiny(max_iters=1))
    assert torch.equal(result.splits.val, load_splits(text_file).val)


# resolved once


def test_cli_resume_reads_the_checkpoint_once(tmp_path, text_file, monkeypatch, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--preset", "smoke", "--data", text_file, "--out", out, "--eval-iters", "1", "--no-progress"]
    assert main([*args, "--max-iters", "4", "--eval-interval", "2"]) == 0
    reads = []
    real_load = checkpoint.load
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: reads.append(a) or real_load(*a, **k))
    assert main(["train", "--resume", "--out", out, "--max-iters", "6", "--no-progress"]) == 0
    assert len(reads) == 1


def test_resume_with_a_fixed_decay_reproduces_a_straight_run(tmp_path, text_file):
    """Regression: `train --resume --max-iters 1500` after 750 steps could not reproduce a straight 1500-step
    run, since the schedule's length (lr_decay_iters) had no flag. With it, it can, to the last digit."""
    common = ["--preset", "smoke", "--data", text_file, "--eval-interval", "6", "--eval-iters", "2", "--no-progress"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert main(["train", *common, "--max-iters", "12", "--out", straight]) == 0
    assert main(["train", *common, "--max-iters", "6", "--lr-decay-iters", "12", "--out", split]) == 0
    assert main(["train", "--resume", "--out", split, "--max-iters", "12", "--no-progress"]) == 0
    a, b = checkpoint.load(straight), checkpoint.load(split)
    assert [m["val_loss"] for m in a.metrics] == [m["val_loss"] for m in b.metrics]


def test_every_flag_reaches_the_saved_config(tmp_path, text_file):
    out = tmp_path / "run"
    flags = ["--pos-embedding", "rope", "--rope-base", "500", "--no-bias", "--warmup-iters", "2",
             "--lr-decay-iters", "9", "--weight-decay", "0.05", "--grad-clip", "0.5", "--betas", "0.8", "0.95",
             "--n-kv-head", "1"]  # fmt: skip
    assert main(["train", "--preset", "smoke", "--data", text_file, "--max-iters", "2", "--eval-iters", "1",
                 "--no-progress", "--out", str(out), *flags]) == 0  # fmt: skip
    saved = TrainConfig.from_dict(checkpoint.load(out).config)
    assert (saved.model.pos_embedding, saved.model.rope_base, saved.model.bias, saved.model.n_kv_head) == (
        "rope", 500.0, False, 1
    )  # fmt: skip
    assert (saved.warmup_iters, saved.lr_decay_iters, saved.weight_decay, saved.grad_clip, saved.betas) == (
        2, 9, 0.05, 0.5, (0.8, 0.95)
    )  # fmt: skip


# one tokenizer loader


def test_one_tokenizer_loader_for_every_kind(tmp_path, tiny_text):
    from scratchlm.tokenizers import BPETokenizer, CharTokenizer, load

    CharTokenizer.from_text(tiny_text).save(tmp_path / "chars.json")
    BPETokenizer.train(tiny_text, 270, progress=False).save(tmp_path / "bpe.tok")
    assert isinstance(load(tmp_path / "chars.json"), CharTokenizer)
    assert load(tmp_path / "bpe.tok").vocab_size == 270
    assert load("r50k_base").encode("hello world") == [31373, 995]
    with pytest.raises(TokenizerError, match="no BPE tokenizer file or character tokenizer file"):
        load(tmp_path / "missing.json")


def test_train_and_tokenizer_commands_take_the_same_specs(tmp_path, text_file, capsys):
    assert main(["tokenizer", "info", "--tokenizer", "cl100k_base"]) == 0
    out = str(tmp_path / "run")
    assert main(["train", "--preset", "smoke", "--data", text_file, "--tokenizer", "r50k_base", "--max-iters", "1",
                 "--eval-iters", "1", "--no-progress", "--out", out]) == 0  # fmt: skip
    assert checkpoint.load(out).model_config["vocab_size"] == 50257
