"""Nothing lost: runs, checkpoints and samples refuse bad input instead of breaking or destroying work.

Each test is named after the failure it pins. The CLI table runs `python -m scratchlm` as a user would, in a
subprocess: exit code 2, one line on stderr, no traceback, and the run folder's files untouched.
"""

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scratchlm import checkpoint
from scratchlm.cli import main
from scratchlm.errors import CheckpointError, ConfigError, OutputError
from scratchlm.files import folder_lock
from scratchlm.generation import generate
from scratchlm.model import GPT, GPTConfig
from scratchlm.training import TrainingDiverged, train

pytestmark = pytest.mark.usefixtures("one_thread")  # and SCRATCHLM_THREADS=1 for the subprocesses
ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--preset", "smoke", "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "1", "--no-progress"]


@pytest.fixture
def tiny(tiny_train_config):
    """This file's tiny runs: `tiny_train_config` with max_iters=6, warmup_iters=2, eval_interval=3, eval_iters=1."""
    return functools.partial(tiny_train_config, max_iters=6, warmup_iters=2, eval_interval=3, eval_iters=1)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "SCRATCHLM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "scratchlm", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


# work that was lost


def test_a_fresh_run_into_an_existing_run_is_refused_not_clobbered(tmp_path, text_file, capsys, tiny):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--data", text_file, "--out", str(out)]) == 0
    before = snapshot(out)
    assert main(["train", *SMALL, "--data", text_file, "--out", str(out)]) == 2
    message = one_error_line(capsys)
    assert "already holds a training run" in message and "--resume" in message and "--overwrite" in message
    assert snapshot(out) == before
    with pytest.raises(OutputError, match="already holds a training run"):
        train(tiny(out_dir=str(out)))
    assert snapshot(out) == before
    assert main(["train", *SMALL, "--max-iters", "3", "--data", text_file, "--out", str(out), "--overwrite"]) == 0
    assert checkpoint.load(out).step == 3  # started over
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 3]


def test_two_runs_on_one_folder_are_refused(tmp_path, tiny):
    out = tmp_path / "run"
    with folder_lock(out), pytest.raises(OutputError, match=r"in use by another training run \(pid \d+\)"):
        train(tiny(out_dir=str(out)))
    assert not (out / "ckpt.pt").exists()
    train(tiny(out_dir=str(out)))  # the lock went with the first holder
    with folder_lock(out):  # and the run released its own
        pass


def test_a_second_cli_run_is_refused_while_the_first_trains(tmp_path, text_file):
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "scratchlm", "train", "--preset", "smoke", "--max-iters", "100000", "--eval-interval",
         "1000", "--data", text_file, "--out", str(out), "--no-progress"],
        cwd=ROOT, env={**os.environ, "SCRATCHLM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (out / "ckpt.pt").exists() and time.monotonic() < deadline:  # step 0 is saved first
            time.sleep(0.2)
        second = run_cli("train", *SMALL, "--data", text_file, "--out", str(out), "--overwrite")
        assert second.returncode == 2 and "in use by another training run" in second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


def test_a_diverging_run_keeps_the_last_good_checkpoint(tmp_path, capsys, tiny):
    out = tmp_path / "run"
    train(tiny(out_dir=str(out)))
    good = (out / "ckpt.pt").read_bytes()
    diverging = tiny(out_dir=str(out), resume=True, max_iters=60, learning_rate=1e30, min_lr=1e29)
    with pytest.raises(TrainingDiverged, match=r"the checkpoint of step 6 in .* was kept"):
        train(diverging)
    assert (out / "ckpt.pt").read_bytes() == good
    assert main(["train", "--resume", "--out", str(out), "--lr", "1e30", "--min-lr", "1e29", "--max-iters", "60"]) == 2
    assert "training diverged" in one_error_line(capsys)
    assert (out / "ckpt.pt").read_bytes() == good


@pytest.mark.parametrize("flag", ["--lr", "--min-lr", "--grad-clip", "--weight-decay"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_non_finite_hyper_parameters_are_refused(flag, value, tmp_path, capsys):
    assert main(["train", *SMALL, flag, value, "--out", str(tmp_path)]) == 2
    assert "must be" in one_error_line(capsys)


def test_sample_refuses_a_checkpoint_with_nan_weights(tmp_path, capsys):
    from scratchlm.tokenizers import CharTokenizer

    model = GPT(GPTConfig(vocab_size=3, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    checkpoint.save(tmp_path, model, tokenizer=CharTokenizer("abc"))
    assert main(["sample", "--ckpt", str(tmp_path), "--prompt", "a"]) == 2
    assert "NaN or infinite values" in one_error_line(capsys)


# tracebacks and wrong results


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
    checkpoint.save(tmp_path, model, step=1)
    before = (tmp_path / "ckpt.pt").read_bytes()

    def disk_full(obj, f):
        f.write(b"partial bytes")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"could not write .*PytorchStreamWriter failed"):
        checkpoint.save(tmp_path, model, step=2)
    assert (tmp_path / "ckpt.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One finished smoke run (step 1) for the tests that only need a checkpoint to spoil; copy it before use."""
    folder = tmp_path_factory.mktemp("trained")
    data = folder / "tiny.txt"
    data.write_text("".join(f"To be, or not to be: line {i}.\n" for i in range(200)), encoding="utf-8")
    assert main(["train", *SMALL, "--max-iters", "1", "--data", str(data), "--out", str(folder / "run")]) == 0
    return folder / "run"


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def craft(path: Path, change) -> None:
    """Rewrite a checkpoint with `change(payload)` applied and a recomputed checksum: bytes that are intact but
    were not written by `save`."""
    payload = torch.load(path, weights_only=True)
    payload.pop("checksum")
    change(payload)
    payload["checksum"] = checkpoint._digest(payload)
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(step="abc"), "step must be a non-negative integer, got 'abc'"),
        (lambda p: p.update(step=-5), "step must be a non-negative integer, got -5"),
        (lambda p: p.update(metrics="all good"), "metrics must be a list"),
        (lambda p: p.update(metrics=[1, 2]), "metrics must be a list of records"),
        (lambda p: p["model_config"].update(vocab_size=10**11), "weights do not fit its model config"),
        (lambda p: p["model_config"].update(n_layer="two"), "model config is not usable"),
        (lambda p: p.update(extra=[]), "extra must be a dict"),
    ],
)
def test_crafted_checkpoints_are_refused_with_one_line(change, message, run_copy, capsys):
    out = run_copy
    craft(out / "ckpt.pt", change)
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(out), "--prompt", "T", "--max-new-tokens", "3"]) == 2
    assert message in one_error_line(capsys)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["rng"].update(torch="not a state"), "random-number state is malformed"),
        (lambda p: p["optimizer"].update(param_groups="none"), "optimizer state does not fit"),
    ],
)
def test_crafted_training_state_is_refused_on_resume(change, message, run_copy, capsys):
    out = run_copy
    craft(out / "ckpt.pt", change)
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--max-iters", "2", "--no-progress"]) == 2
    assert message in one_error_line(capsys)


def test_a_tokenizer_larger_than_its_model_is_refused(tmp_path, capsys):
    from scratchlm.tokenizers import CharTokenizer

    model = GPT(GPTConfig(vocab_size=3, block_size=8, n_layer=1, n_head=2, n_embd=8))
    checkpoint.save(tmp_path, model, tokenizer=CharTokenizer("abcdef"))
    assert main(["sample", "--ckpt", str(tmp_path), "--prompt", "a"]) == 2
    assert "tokenizer has 6 ids but its model only 3 embeddings" in one_error_line(capsys)


def test_seeds_and_ids_outside_their_range_are_refused(tmp_path, run_copy, capsys):
    assert main(["train", *SMALL, "--seed", str(2**70), "--out", str(tmp_path / "a")]) == 2
    assert "seed must be an integer in [0, 2**64)" in one_error_line(capsys)
    out = run_copy
    assert main(["sample", "--ckpt", str(out), "--prompt", "T", "--seed", str(2**70)]) == 2
    assert "seed must be an integer in [0, 2**64) or None" in one_error_line(capsys)
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
    for ids, message in (([[5]], "token id 5 is outside"), ([[-1]], "token id -1 is outside")):
        with pytest.raises(ConfigError, match=message):
            generate(model, torch.tensor(ids), 2)
    with pytest.raises(ConfigError, match="seed must be an integer"):
        generate(model, torch.tensor([[1]]), 2, seed=1.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n-embd", "100000"], "training this model needs at least"),
        (["--n-layer", "1000000"], "training this model needs at least"),
        (["--batch-size", "100000000"], "training this model needs at least"),
    ],
)
def test_absurd_training_sizes_are_refused_before_allocating(args, message, tmp_path, capsys):
    start = time.perf_counter()
    assert main(["train", *SMALL, *args, "--out", str(tmp_path)]) == 2
    assert message in one_error_line(capsys) and time.perf_counter() - start < 30


def test_absurd_sampling_sizes_are_refused(run_copy, capsys):
    out = run_copy
    assert main(["sample", "--ckpt", str(out), "--prompt", "T", "--num-samples", str(10**9)]) == 2
    assert "sampling 1,000,000,000 sequences needs at least" in one_error_line(capsys)
    assert main(["sample", "--ckpt", str(out), "--prompt", "T", "--max-new-tokens", str(10**12)]) == 2
    assert "is more than this command allows" in one_error_line(capsys)


def test_sample_streams_its_text_and_ctrl_c_keeps_it(run_copy):
    out = run_copy
    sample = subprocess.Popen(
        [sys.executable, "-m", "scratchlm", "sample", "--ckpt", str(out), "--prompt", "To be",
         "--max-new-tokens", "5000000", "--seed", "1"],
        cwd=ROOT, env={**os.environ, "SCRATCHLM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job's children ignore it
    )  # fmt: skip
    first = sample.stdout.read(200)  # arrives long before five million tokens are done
    sample.send_signal(signal.SIGINT)
    rest, err = sample.communicate(timeout=60)
    assert first.startswith(b"To be") and len(first) == 200
    assert sample.returncode == 130 and b"interrupted" in err and b"Traceback" not in err
    assert len(first + rest) > 200  # what was generated before Ctrl-C is still printed


def test_killed_saves_leave_no_temporaries_and_resume_drops_later_metrics(tmp_path, tiny):
    out = tmp_path / "run"
    train(tiny(out_dir=str(out)))
    dead = out / ".ckpt.pt.999999999.abcd1234.tmp"  # no process has this pid
    dead.write_bytes(b"half a checkpoint")
    live = out / f".ckpt.pt.{os.getpid()}.abcd1234.tmp"
    live.write_bytes(b"being written right now")
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:  # a run killed after logging, before saving
        f.write(json.dumps({"step": 7, "val_loss": 0.0}) + "\n")
    resumed = train(tiny(out_dir=str(out), resume=True, max_iters=9))
    assert not dead.exists() and live.exists()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == resumed.metrics and [m["step"] for m in logged] == [0, 3, 6, 9]


# conversions


def test_from_hf_refuses_an_untied_head_and_converts_a_tied_one():
    transformers = pytest.importorskip("transformers")
    from scratchlm.hf import from_hf

    sizes = dict(vocab_size=11, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    tied = transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes)).eval()
    ids = torch.randint(0, 11, (1, 8))
    torch.testing.assert_close(from_hf(tied)(ids)[0], tied(ids).logits, atol=1e-5, rtol=1e-5)
    untied = transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes, tie_word_embeddings=False))
    with torch.no_grad():
        untied.lm_head.weight.normal_()
    with pytest.raises(ConfigError, match="tie_word_embeddings=False"):
        from_hf(untied)


# the whole CLI, as a user runs it


def bad_inputs(tmp_path: Path, text_file: str) -> list[tuple[list[str], str]]:
    run = str(tmp_path / "run")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00 not a checkpoint" * 20)
    return [
        (["train", *SMALL, "--data", text_file, "--out", run], "already holds a training run"),
        (["train", *SMALL, "--out", run, "--resume", "--overwrite"], "choose one"),
        (["train", *SMALL, "--lr", "inf", "--out", run], "--lr must be positive and finite"),
        (["train", *SMALL, "--seed", str(2**70), "--out", run], "seed must be an integer"),
        (["train", *SMALL, "--n-embd", "100000", "--data", text_file, "--out", str(tmp_path / "b")], "needs at least"),
        (["train", *SMALL, "--n-embd", "30", "--n-head", "4", "--out", run], "--n-embd 30 is not divisible by"),
        (["train", *SMALL, "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "c")], "no such data"),
        (
            [
                "train",
                *SMALL,
                "--tokenizer",
                str(tmp_path / "no.bpe"),
                "--data",
                text_file,
                "--out",
                str(tmp_path / "d"),
            ],
            "no BPE tokenizer file",
        ),
        (["sample", "--ckpt", run, "--seed", str(2**70)], "seed must be an integer"),
        (["sample", "--ckpt", run, "--prompt", "€"], "not in this tokenizer's vocabulary"),
        (["sample", "--ckpt", run, "--max-new-tokens", str(10**12)], "is more than this command allows"),
        (["sample", "--ckpt", str(garbage)], "not a readable checkpoint"),
        (["sample", "--ckpt", str(tmp_path / "nowhere")], "no checkpoint at"),
    ]


def test_bad_input_through_the_cli_is_one_line_and_touches_nothing(tmp_path, text_file):
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--data", text_file, "--out", str(run)]) == 0
    before = snapshot(run)
    for args, message in bad_inputs(tmp_path, text_file):
        result = run_cli(*args)
        where = f"{' '.join(args)}:\n{result.stderr}"
        assert result.returncode == 2, where
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and message in result.stderr, where
        assert snapshot(run) == before, where


def test_a_run_killed_at_random_moments_always_resumes(tmp_path, text_file):
    """SIGKILL a training run at 10 random moments; each time the latest checkpoint loads and --resume goes on;
    at the end the run finishes with every step's metrics exactly once."""
    out = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--max-iters", "400", "--eval-interval", "5", "--eval-iters", "1",
            "--data", text_file, "--out", str(out), "--no-progress"]  # fmt: skip
    rng = random.Random(0)
    env = {**os.environ, "SCRATCHLM_THREADS": "1"}
    for _ in range(10):
        resume = ["--resume"] if (out / "ckpt.pt").exists() else ["--overwrite"]
        proc = subprocess.Popen([sys.executable, "-m", "scratchlm", *args, *resume], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(2.0, 4.0))  # torch's import takes about 2 s: kill during training and saving
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (out / "ckpt.pt").exists():
            checkpoint.load(out)  # never a half-written checkpoint
    finished = run_cli(*args, "--resume" if (out / "ckpt.pt").exists() else "--overwrite", timeout=300)
    assert finished.returncode == 0, finished.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(0, 401, 5))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
