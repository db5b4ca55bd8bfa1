"""`python -m scratchlm eval`: the report card of a checkpoint, and one-line errors for everything a user can get
wrong (no checkpoint, a damaged or foreign one, data that is too short or does not fit the tokenizer, an output
folder that cannot be written, bad flag values)."""

from __future__ import annotations

import json

import pytest
import torch

from scratchlm import checkpoint
from scratchlm.cli import main
from scratchlm.training import train

FAST = ["--val-fraction", "0.5", "--cloze-items", "12", "--samples", "2", "--sample-tokens", "30"]
FAST += ["--induction-batch", "4", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on a small play-like text: (checkpoint folder, data file)."""
    folder = tmp_path_factory.mktemp("eval")
    lines = []
    for i in range(300):
        lines += [f"SPEAKER {'ABC'[i % 3]}:", f"To be, or not to be: line {i} of a tiny play.", ""]
    data = folder / "play.txt"
    data.write_text("\n".join(lines), encoding="utf-8")
    from scratchlm.training import TrainConfig

    config = TrainConfig().replace(
        data=str(data), n_layer=1, n_head=2, n_embd=16, block_size=32, batch_size=4, max_iters=20,
        warmup_iters=2, eval_interval=20, eval_iters=2, out_dir=str(folder / "run"), progress=False,
    )  # fmt: skip
    train(config)
    return folder / "run", data


def one_line_error(capsys, argv, match: str) -> None:
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err


def test_report_card_prints_and_writes_json_and_plots(trained, capsys, tmp_path):
    run, _ = trained
    out = tmp_path / "report"
    assert main(["eval", "--ckpt", str(run), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    for heading in ("held-out", "calibration", "cloze", "induction", "novelty", "bits per byte", "chance"):
        assert heading in printed
    card = json.loads((out / "report.json").read_text())
    assert card["checkpoint"]["step"] == 20
    assert 0 < card["heldout"]["bits_per_byte"] < 8
    assert (
        0 <= card["calibration"]["ece"] <= 1
        and sum(card["calibration"]["bins"]["count"]) == card["heldout"]["tokens"] - 1
    )
    assert card["cloze"]["items"] == 12 and card["cloze"]["chance"] == 0.25
    assert len(card["induction"]["scores"]) == 1 and len(card["induction"]["scores"][0]) == 2
    assert 0 <= card["novelty"]["novel_ngram_fraction"] <= 1
    for name in ("reliability.png", "induction.png", "attention.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_default_output_folder_is_beside_the_checkpoint(trained, capsys):
    run, _ = trained
    assert main(["eval", "--ckpt", str(run / "ckpt.pt"), *FAST]) == 0
    assert (run / "eval" / "report.json").is_file()


def test_missing_checkpoint(capsys, tmp_path):
    one_line_error(capsys, ["--ckpt", str(tmp_path / "nothing")], "no checkpoint at")


def test_corrupt_checkpoint(capsys, tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"\x00not a checkpoint" * 10)
    one_line_error(capsys, ["--ckpt", str(path)], "not a readable checkpoint")


def test_truncated_checkpoint(trained, capsys, tmp_path):
    run, _ = trained
    data = (run / "ckpt.pt").read_bytes()
    path = tmp_path / "ckpt.pt"
    path.write_bytes(data[: len(data) // 2])
    one_line_error(capsys, ["--ckpt", str(path)], "not a readable checkpoint")


def test_foreign_checkpoint(capsys, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    one_line_error(capsys, ["--ckpt", str(path)], "not a scratchlm checkpoint")


def test_checkpoint_that_does_not_name_its_data(trained, capsys, tmp_path):
    run, _ = trained
    saved = checkpoint.load(run)
    model, tokenizer = saved.build_model(), saved.build_tokenizer()
    checkpoint.save(tmp_path / "bare", model, tokenizer=tokenizer)
    one_line_error(capsys, ["--ckpt", str(tmp_path / "bare")], "give --data")


def test_data_too_short(trained, capsys, tmp_path):
    run, _ = trained
    short = tmp_path / "short.txt"
    short.write_text("To be, or not to be.\n" * 3, encoding="utf-8")
    one_line_error(capsys, ["--ckpt", str(run), "--data", str(short), "--out", str(tmp_path / "o")], "too few")


def test_data_with_characters_the_tokenizer_lacks(trained, capsys, tmp_path):
    run, _ = trained
    other = tmp_path / "other.txt"
    other.write_text("Ωμέγα " * 500, encoding="utf-8")
    one_line_error(
        capsys, ["--ckpt", str(run), "--data", str(other), "--out", str(tmp_path / "o")], "not in this tokenizer"
    )


def test_missing_data_file(trained, capsys, tmp_path):
    run, _ = trained
    one_line_error(capsys, ["--ckpt", str(run), "--data", str(tmp_path / "absent.txt")], "absent.txt")


def test_output_folder_that_is_a_file(trained, capsys, tmp_path):
    run, _ = trained
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    one_line_error(capsys, ["--ckpt", str(run), "--out", str(blocker)], "is a file; it must be a folder")


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--bins", "0"], "bins"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--cloze-choices", "1"], "--cloze-choices"),
        (["--stride", "abc"], "not an integer"),
    ],
)
def test_bad_flag_values(trained, capsys, flags, match):
    run, _ = trained
    try:
        code = main(["eval", "--ckpt", str(run), *flags])
    except SystemExit as e:  # argparse's own type errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err


def test_stride_larger_than_the_block(trained, capsys, tmp_path):
    run, _ = trained
    one_line_error(capsys, ["--ckpt", str(run), "--stride", "999", "--out", str(tmp_path / "o"), *FAST], "block_size")
