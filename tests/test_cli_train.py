import argparse
import os
import stat

import pytest
import torch

from scratchlm.cli import main
from scratchlm.cli.train import config_from_args, register
from scratchlm.training import preset


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


SMALL = ["--preset", "smoke", "--max-iters", "12", "--eval-interval", "6", "--eval-iters", "2", "--no-progress"]


def test_train_then_sample(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--data", text_file, "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "step 12: train loss" in printed and "sample:" in printed
    assert (out / "ckpt.pt").is_file() and (out / "metrics.jsonl").is_file()

    args = ["sample", "--ckpt", str(out), "--prompt", "To be", "--max-new-tokens", "20", "--seed", "1"]
    assert main([*args, "--num-samples", "2", "--top-k", "5", "--top-p", "0.9"]) == 0
    samples = capsys.readouterr().out.split("-" * 40 + "\n")
    assert len(samples) == 2 and all(s.startswith("To be") for s in samples)
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first  # same seed, same text
    assert (
        main(["sample", "--ckpt", str(out / "ckpt.pt"), "--prompt", "T", "--temperature", "0", "--max-new-tokens", "5"])
        == 0
    )


def test_resume_continues_from_the_checkpoint(tmp_path, text_file, capsys):
    out = str(tmp_path / "run")
    assert main(["train", *SMALL, "--data", text_file, "--out", out]) == 0
    assert main(["train", *SMALL, "--max-iters", "18", "--data", text_file, "--out", out, "--resume"]) == 0
    assert "step 18:" in capsys.readouterr().out
    ckpt = torch.load(f"{out}/ckpt.pt", weights_only=True)
    assert ckpt["step"] == 18


def test_resume_needs_only_the_folder(tmp_path, text_file, capsys):
    """The run's settings come from its checkpoint: no need to repeat --preset and the size flags."""
    out = str(tmp_path / "run")
    assert main(["train", *SMALL, "--n-embd", "24", "--data", text_file, "--out", out]) == 0
    assert main(["train", "--resume", "--out", out, "--max-iters", "18", "--no-progress"]) == 0
    assert "24 dims" in capsys.readouterr().out
    ckpt = torch.load(f"{out}/ckpt.pt", weights_only=True)
    assert ckpt["step"] == 18 and ckpt["model_config"]["n_embd"] == 24 and ckpt["config"]["data"] == text_file


def test_train_and_sample_with_a_bpe_tokenizer_file(tmp_path, text_file, capsys):
    tok = str(tmp_path / "tok.bpe")
    assert main(["tokenizer", "train", "--data", text_file, "--vocab-size", "300", "--out", tok, "--no-progress"]) == 0
    out = str(tmp_path / "run")
    assert main(["train", *SMALL, "--data", text_file, "--tokenizer", tok, "--out", out]) == 0
    ckpt = torch.load(f"{out}/ckpt.pt", weights_only=True)
    assert ckpt["model_config"]["vocab_size"] == 300 and ckpt["config"]["tokenizer"] == tok
    capsys.readouterr()
    assert main(["sample", "--ckpt", out, "--prompt", "To be", "--max-new-tokens", "10", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("To be")


def test_files_are_readable_by_others(tmp_path, text_file):
    """Regression: mkstemp's private 0600 mode survived the atomic rename of checkpoints and tokenizers."""
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--max-iters", "1", "--data", text_file, "--out", str(out)]) == 0
    tok = tmp_path / "tok.bpe"
    assert main(["tokenizer", "train", "--data", text_file, "--vocab-size", "260", "--out", str(tok)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    for path in (out / "ckpt.pt", tok):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_train_on_tinyshakespeare_by_default(tmp_path, capsys):
    assert main(["train", "--preset", "smoke", "--max-iters", "2", "--eval-iters", "1", "--no-progress",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    assert "sample:" in capsys.readouterr().out


def test_a_cpu_trains_the_speedrun_record_by_default_and_gpt2s_recipe_by_name(tmp_path):
    """Issue 18: the modern recipe won the CPU speedrun at equal wall time, so it is `train`'s CPU default; the
    GPT-2 recipe it replaced stays reachable as --preset cpu."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    cpu = torch.device("cpu")
    default = config_from_args(parser.parse_args(["train", "--max-iters", "5"]), cpu)
    assert default == preset("cpu-modern", max_iters=5, out_dir="out")
    assert (default.optimizer, default.model.mlp, default.model.tie_embeddings) == ("muon", "swiglu", False)
    gpt2 = config_from_args(parser.parse_args(["train", "--preset", "cpu"]), cpu)
    assert (gpt2.optimizer, gpt2.model.mlp, gpt2.max_iters) == ("adamw", "gelu", 3500)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "--preset", "tpu"], "unknown preset 'tpu'; choose one of: smoke, cpu, gpu, cpu-modern"),
        (["train", "--preset", "smoke", "--n-embd", "100", "--n-head", "3"], "--n-embd 100 is not divisible by"),
        (["train", "--preset", "smoke", "--dropout", "1.5"], "dropout must be in [0, 1)"),
        (["train", "--preset", "smoke", "--data", "/no/such/file.txt"], "no such data file"),
        (["train", "--preset", "smoke", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_training_input_is_one_line_exit_2(args, expected, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert expected in one_error_line(capsys)


def test_unwritable_output_is_one_line_exit_2(tmp_path, text_file, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert main(["train", *SMALL, "--data", text_file, "--out", str(a_file)]) == 2
    assert "is a file; it must be a folder" in one_error_line(capsys)
    assert main(["train", *SMALL, "--data", text_file, "--out", str(a_file / "run")]) == 2
    assert "cannot write to --out" in one_error_line(capsys)
    assert main(["tokenizer", "train", "--data", text_file, "--vocab-size", "260", "--out", str(tmp_path)]) == 2
    assert "it is a folder, not a file" in one_error_line(capsys)


def test_sample_with_extreme_temperatures(tmp_path, text_file, capsys):
    out = str(tmp_path / "run")
    assert main(["train", *SMALL, "--max-iters", "1", "--data", text_file, "--out", out]) == 0
    capsys.readouterr()
    assert main(["sample", "--ckpt", out, "--prompt", "T", "--max-new-tokens", "5", "--temperature", "1e-45"]) == 0
    assert main(["sample", "--ckpt", out, "--prompt", "T", "--temperature", "inf"]) == 2
    assert "temperature must be a finite number" in one_error_line(capsys)


def test_resume_without_checkpoint(tmp_path, capsys):
    assert main(["train", "--preset", "smoke", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "no checkpoint at" in one_error_line(capsys)


def test_bad_flag_value_is_one_line_exit_2(capsys):
    assert main(["train", "--n-embd", "-4"]) == 2  # checked by GPTConfig, the one place that validates it
    assert "--n-embd must be a positive integer, got -4" in one_error_line(capsys)
    with pytest.raises(SystemExit) as exit_:  # text that is no number at all: argparse's usage error
        main(["train", "--n-embd", "four"])
    assert exit_.value.code == 2
    assert "'four' is not an integer" in one_error_line(capsys)


def test_sample_missing_checkpoint(tmp_path, capsys):
    assert main(["sample", "--ckpt", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint at" in one_error_line(capsys)


def test_sample_foreign_checkpoint(tmp_path, capsys):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "foreign.pt")
    assert main(["sample", "--ckpt", str(tmp_path / "foreign.pt")]) == 2
    assert "not a scratchlm checkpoint" in one_error_line(capsys)
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint at all" * 10)
    assert main(["sample", "--ckpt", str(tmp_path / "garbage.pt")]) == 2
    assert "not a readable checkpoint" in one_error_line(capsys)


def test_sample_prompt_outside_the_vocabulary(tmp_path, text_file, capsys):
    out = str(tmp_path / "run")
    assert main(["train", *SMALL, "--max-iters", "1", "--data", text_file, "--out", out]) == 0
    capsys.readouterr()
    assert main(["sample", "--ckpt", out, "--prompt", "Zebra €"]) == 2
    assert "is not in this tokenizer's vocabulary" in one_error_line(capsys)


def test_help_explains_the_flags(capsys):
    for command, flags in (("train", ["--preset", "--n-embd", "--resume", "--out"]), ("sample", ["--top-p", "--seed"])):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert all(flag in text for flag in flags)
