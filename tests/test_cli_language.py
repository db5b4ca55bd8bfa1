"""The command line speaks one language (issue 22, item 12): every command and subcommand describes itself, a
progress bar is switched with --progress/--no-progress everywhere (no --quiet), --threads is described one way,
settings show their defaults, and refusals speak in flags only, before any banner."""

from __future__ import annotations

import argparse

import pytest

from scratchlm.cli import build_parser, main
from scratchlm.files import folder_lock

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["--preset", "smoke", "--n-layer", "1", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
         "--max-iters", "2", "--eval-interval", "2", "--eval-iters", "1", "--no-progress"]  # fmt: skip


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every command and subcommand's parser, by its name ("train", "tokenizer info", ...)."""
    found = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[f"{prefix}{name}"] = sub
                    walk(sub, f"{prefix}{name} ")

    walk(build_parser(), "")
    return found


COMMANDS = _commands()


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_describes_itself_and_every_option(name):
    parser = COMMANDS[name]
    assert parser.description and len(parser.description) > 20, name
    for action in _options(parser):
        assert action.help and action.help.strip(), (name, action.option_strings)
    parser.format_help()  # a help string with a stray % would fail here


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_one_progress_switch_and_one_threads_sentence(name):
    flags = {flag for action in _options(COMMANDS[name]) for flag in action.option_strings}
    assert not {"--quiet", "-q", "--silent"} & flags, name
    if "--progress" in flags:
        assert "--no-progress" in flags
    threads = [a for a in _options(COMMANDS[name]) if "--threads" in a.option_strings]
    for action in threads:
        assert action.help.startswith("CPU threads") and "(default: SCRATCHLM_THREADS if set, else " in action.help


@pytest.mark.parametrize("name", ["train", "pretrain", "prepare", "eval", "ladder", "sweep"])
def test_settings_show_their_defaults(name):
    shown = [a for a in _options(COMMANDS[name]) if a.option_strings[0] in ("--n-layer", "--lr", "--max-iters",
             "--shard-tokens", "--bins", "--depth", "--val-fraction", "--seed")]  # fmt: skip
    assert shown, name
    for action in shown:
        assert "default" in action.help, (name, action.option_strings)


def test_a_refused_second_train_prints_no_banner_and_speaks_in_flags(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--data", text_file, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", *SMALL, "--data", text_file, "--out", str(out)]) == 2  # the folder holds a run
    captured = capsys.readouterr()
    assert "training on" not in captured.out
    assert "(--resume)" in captured.err and "(--overwrite)" in captured.err and "=True" not in captured.err
    with folder_lock(out):  # another run is training in the folder
        assert main(["train", *SMALL, "--data", text_file, "--out", str(out), "--overwrite"]) == 2
    captured = capsys.readouterr()
    assert "training on" not in captured.out and "in use by another" in captured.err


def test_resuming_a_finished_run_says_it_is_done(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--data", text_file, "--out", str(out)]) == 0
    before = (out / "ckpt.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out)]) == 0
    assert "holds a finished run (step 2 of --max-iters 2)" in capsys.readouterr().out
    assert (out / "ckpt.pt").stat().st_mtime_ns == before


def test_sample_without_a_checkpoint_says_to_train_first(tmp_path, capsys):
    assert main(["sample", "--ckpt", str(tmp_path / "nothing"), "--prompt", "a"]) == 2
    assert "train a model first (python -m scratchlm train" in capsys.readouterr().err
