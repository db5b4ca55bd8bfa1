"""The `sft`, `chat` and chat-checkpoint `eval` commands: runs, resume and refusals, a scripted chat session."""

from __future__ import annotations

import io
import json
import string
import subprocess
import sys

import pytest
import torch

from scratchlm import checkpoint
from scratchlm.cli import main
from scratchlm.model import GPT, GPTConfig
from scratchlm.tokenizers import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

ALPHABET = sorted(set(string.ascii_letters + string.digits + string.punctuation + " \n"))
FAST = ["--batch-size", "4", "--warmup-iters", "2", "--eval-interval", "3", "--n-conversations", "64",
        "--val-per-skill", "2", "--no-progress", "--seed", "0"]  # fmt: skip


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def base(tmp_path) -> str:
    tokenizer = CharTokenizer(ALPHABET)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16,
                          pos_embedding="rope"))  # fmt: skip
    path = tmp_path / "base"
    checkpoint.save(path, model, tokenizer=tokenizer)
    return str(path)


@pytest.fixture
def tuned(base, tmp_path, capsys) -> str:
    out = str(tmp_path / "sft")
    assert main(["sft", "--base", base, "--out", out, "--max-iters", "3", *FAST]) == 0
    capsys.readouterr()
    return out


def test_sft_reports_the_grown_vocabulary_and_resumes(base, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["sft", "--base", base, "--out", out, "--max-iters", "3", "--lora-rank", "2", *FAST]) == 0
    printed = capsys.readouterr().out
    assert f"vocabulary {len(ALPHABET)} -> {len(ALPHABET) + 4} ids" in printed and "LoRA rank 2" in printed
    assert "step 3: loss on assistant tokens" in printed and "Reverse" in printed
    assert main(["sft", "--base", base, "--out", out, "--max-iters", "3", *FAST]) == 2
    assert "already holds a training run" in one_error_line(capsys)
    assert main(["sft", "--out", out, "--resume", "--max-iters", "6", "--no-progress"]) == 0
    assert "LoRA rank 2" in capsys.readouterr().out  # the saved settings, without repeating them
    saved = checkpoint.load(out)
    assert saved.step == 6 and saved.config["lora_rank"] == 2 and "adapted_state" in saved.extra


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-iters", "3"], "give the base model's checkpoint"),
        (["--base", "nowhere"], "no checkpoint at nowhere"),
        (["--data", "missing.jsonl"], "no such conversation file: missing.jsonl"),
        (["--lora-rank", "2", "--weight-decay", "0.1"], "LoRA trains with --weight-decay 0"),
    ],
)
def test_sft_bad_input_is_one_line(base, tmp_path, capsys, argv, message):
    if "--base" not in argv and "give the base" not in message:
        argv = ["--base", base, *argv]
    assert main(["sft", "--out", str(tmp_path / "x"), *argv, *FAST]) == 2
    assert message in one_error_line(capsys)


def test_sft_names_a_malformed_jsonl_line(base, tmp_path, capsys):
    path = tmp_path / "chats.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    path.write_text(json.dumps(good) + "\n" + '{"messages": [{"role": "narrator", "content": "x"}]}\n')
    assert main(["sft", "--base", base, "--data", str(path), "--out", str(tmp_path / "x"), *FAST]) == 2
    assert "chats.jsonl:2: message 0 has the unknown role 'narrator'" in one_error_line(capsys)


def chat(monkeypatch, capsys, argv, lines: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code = main(["chat", *argv])
    return code, capsys.readouterr().out


def test_a_scripted_chat_session(tuned, monkeypatch, capsys):
    script = "/help\n\n   \nReverse abc.\nAnd then?\n/bogus\n/reset\nHow many a are in banana?\né\n/quit\nnever read\n"
    code, out = chat(monkeypatch, capsys, ["--ckpt", tuned, "--max-new-tokens", "8"], script)
    assert code == 0
    assert out.count("assistant> ") == 3 and "never read" not in out
    assert out.count("(an empty message") == 2 and "commands: /reset" in out and "unknown command /bogus" in out
    assert "(a new conversation)" in out and "(not sent: message" in out and "'é'" in out


def test_chat_drops_old_exchanges_and_says_so(tuned, monkeypatch, capsys):
    script = "Reverse abcdef.\nSort the letters of abcdef.\nHow many a are in banana?\n"
    code, out = chat(monkeypatch, capsys, ["--ckpt", tuned, "--max-new-tokens", "8"], script)
    assert code == 0 and "dropped the oldest 2 messages" in out and out.endswith("you> \n")  # end of input


def test_chat_refuses_a_message_longer_than_the_context(tuned, monkeypatch, capsys):
    code, out = chat(monkeypatch, capsys, ["--ckpt", tuned, "--max-new-tokens", "8"], "x" * 80 + "\nhi\n")
    assert code == 0 and "longer than the model's context" in out and out.count("assistant> ") == 1


def test_chat_with_a_base_checkpoint_is_one_line(base, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    assert main(["chat", "--ckpt", base]) == 2
    assert "has no chat tokens" in one_error_line(capsys)


def test_chat_in_a_subprocess_ends_cleanly_at_end_of_input(tuned):
    done = subprocess.run([sys.executable, "-m", "scratchlm", "chat", "--ckpt", tuned, "--max-new-tokens", "4"],
                          input="Reverse ab.\n", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stderr == "" and "assistant> " in done.stdout


def test_eval_reports_task_accuracy_of_a_chat_checkpoint(tuned, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["eval", "--ckpt", tuned, "--out", str(out), "--task-items", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "task accuracy" in printed and "reverse" in printed and "/3)" in printed
    report = json.loads((out / "tasks.json").read_text())
    assert set(report) == {"count", "reverse", "sort", "add"} and report["add"]["total"] == 3
