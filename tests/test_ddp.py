"""DDP under torchrun on CPU (gloo), as the `pretrain` command runs it: 2 processes x micro-batch b take the same
steps as 1 process x 2b; a 2-process checkpoint resumes in one process; a killed rank ends the run with a clear
message instead of a hang. Each test launches `python -m torch.distributed.run` as a subprocess with a timeout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchlm import checkpoint
from scratchlm.pretraining.shards import prepare

ROOT = Path(__file__).resolve().parents[1]
# --no-bias: the key projection's bias has a gradient of exactly 0 in exact arithmetic (softmax ignores a shift common
# to all keys), so in floating point it is rounding noise, which Adam divides by its own root mean square and turns
# into updates of full size: 2.8e-5 apart after 6 steps between two equally valid summation orders, while every other
# weight agreed to 5e-6. Without biases the comparison tests the all-reduce, not Adam's amplification of noise.
MODEL = ["--no-bias", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--lr", "1e-2",
         "--min-lr", "1e-3", "--warmup-iters", "2", "--eval-iters", "2", "--samples", "0", "--no-progress"]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ, SCRATCHLM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _pretrain_command(nproc: int, *args: str) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "scratchlm", "pretrain", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "scratchlm", "pretrain", *args]  # fmt: skip


def _run(nproc: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(_pretrain_command(nproc, *args), env=_env(), capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """Tiny Shakespeare's first 200 speeches in character shards (no mirror needed: the text is made here)."""
    folder = tmp_path_factory.mktemp("ddp")
    text = "\n\n".join(f"SPEAKER {i % 7}:\nTo be, or not to be, line {i}; that is the question {i * 31 % 97}."
                       for i in range(400))  # fmt: skip
    (folder / "play.txt").write_text(text, encoding="utf-8")
    prepare(folder / "play.txt", "char", folder / "shards", val_fraction=0.1, workers=1, progress=False)
    return str(folder / "shards")


def _state(out: Path) -> checkpoint.Checkpoint:
    return checkpoint.load(out / checkpoint.FILENAME)


def _assert_same_run(a: checkpoint.Checkpoint, b: checkpoint.Checkpoint, tol: float = 2e-5) -> None:
    assert a.step == b.step
    torch.testing.assert_close(torch.tensor(a.extra["step_losses"]), torch.tensor(b.extra["step_losses"]),
                               rtol=tol, atol=tol)  # fmt: skip
    for name, tensor in a.model_state.items():
        torch.testing.assert_close(tensor, b.model_state[name], rtol=tol, atol=tol, msg=name)
    assert a.extra["loader"] == b.extra["loader"]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_two_ranks_of_batch_b_take_the_steps_of_one_process_of_batch_2b(shards, tmp_path, optimizer):
    common = ["--data", shards, *MODEL, "--max-iters", "6", "--eval-interval", "3", "--batch-tokens", "256",
              "--optimizer", optimizer]  # fmt: skip
    _run(2, *common, "--batch-size", "4", "--out", str(tmp_path / "ddp"))  # 2 ranks x 4 x 16 x 2 micro-batches
    _run(1, *common, "--batch-size", "8", "--out", str(tmp_path / "one"))  # 1 process x 8 x 16 x 2 micro-batches
    ddp, one = _state(tmp_path / "ddp"), _state(tmp_path / "one")
    assert ddp.extra["world_size"] == 2 and one.extra["world_size"] == 1
    assert len(ddp.extra["step_losses"]) == 6
    _assert_same_run(ddp, one)
    ddp_val = [m["val_loss"] for m in ddp.metrics]
    assert ddp_val == pytest.approx([m["val_loss"] for m in one.metrics], rel=1e-5)


def test_a_ddp_checkpoint_resumes_in_a_single_process(shards, tmp_path):
    common = ["--data", shards, *MODEL, "--eval-interval", "3", "--lr-decay-iters", "9"]
    _run(2, *common, "--batch-size", "4", "--max-iters", "6", "--out", str(tmp_path / "run"))
    resumed = _run(1, "--resume", "--out", str(tmp_path / "run"), "--batch-size", "8", "--max-iters", "9")
    assert "x 1 process(es)" in resumed.stdout and "step 9:" in resumed.stdout
    _run(1, *common, "--batch-size", "8", "--max-iters", "9", "--out", str(tmp_path / "straight"))
    _assert_same_run(_state(tmp_path / "run"), _state(tmp_path / "straight"))


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc: no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int:
    environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    return int(next(v for v in environ if v.startswith(b"RANK=")).split(b"=", 1)[1])


def _no_traceback_from_scratchlm(stderr: str) -> None:
    """torchrun prints its own summary of a failed child (with its own traceback); the ranks print one line each."""
    assert f'File "{ROOT / "scratchlm"}' not in stderr, stderr[-3000:]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks' processes through /proc (Linux)")
@pytest.mark.parametrize("victim", [0, 1])
def test_killing_one_rank_ends_the_run_in_seconds_with_a_clear_message(victim, shards, tmp_path):
    """Regression (issue 22, item 8): with rank 0 killed, the survivor waited for torchrun's grace period."""
    out = tmp_path / "run"
    args = ["--data", shards, *MODEL, "--batch-size", "4", "--max-iters", "100000", "--eval-interval", "2",
            "--out", str(out), "--ddp-timeout", "60"]  # fmt: skip
    launcher = subprocess.Popen(_pretrain_command(2, *args), env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # wait until the run has trained and evaluated a few steps
            metrics = out / "metrics.jsonl"
            if metrics.exists() and any(json.loads(line)["step"] >= 4 for line in metrics.read_text().splitlines()):
                break
            assert launcher.poll() is None, launcher.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("the run did not reach step 4 in 90 s")
        ranks = {_rank_of(pid): pid for pid in _children(launcher.pid)}
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[victim], signal.SIGKILL)  # one rank dies without a word
        killed = time.monotonic()
        _, stderr = launcher.communicate(timeout=90)  # a hang would raise TimeoutExpired here
        seconds = time.monotonic() - killed
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode != 0
    assert seconds < 20, f"the run took {seconds:.0f} s to end (ddp_timeout 60 s, torchrun's grace period 30 s)"
    assert "a collective operation failed" in stderr or "was stopped by torchrun" in stderr, stderr[-3000:]
    _no_traceback_from_scratchlm(stderr)
    assert checkpoint.load(out / checkpoint.FILENAME).step >= 4  # the last checkpoint survives


def test_a_configuration_error_of_every_rank_ends_the_run_at_once(shards, tmp_path):
    """Regression (issue 22, item 8): --batch-tokens not a multiple of batch x block x ranks was found by rank 0
    alone, and the other rank waited for it in the rendezvous until torchrun's grace period ended."""
    start = time.monotonic()
    result = subprocess.run(
        _pretrain_command(2, "--data", shards, *MODEL, "--batch-size", "4", "--batch-tokens", "100", "--out",
                          str(tmp_path / "run")),
        env=_env(), capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    seconds = time.monotonic() - start
    assert result.returncode != 0
    assert "is not a multiple of --batch-size x --block-size x ranks" in result.stderr, result.stderr[-3000:]
    _no_traceback_from_scratchlm(result.stderr)
    assert seconds < 25, f"{seconds:.0f} s"


def test_a_bad_shard_read_by_one_rank_ends_the_run_in_seconds_with_its_one_line(shards, tmp_path):
    """Regression (issue 22, item 8): one rank alone reads a window that holds an id beyond the vocabulary (shards
    changed after prepare, run with --no-verify); it stops with the loader's one line, and the other rank, waiting
    for it in the gradient all-reduce, must not wait out --ddp-timeout."""
    damaged = tmp_path / "shards"
    shutil.copytree(shards, damaged)
    shard = damaged / "train_000000.bin"
    ids = np.fromfile(shard, dtype="<u2")
    ids[len(ids) // 2] = 60_000  # one token: exactly one rank reads the window that holds it, in the first epoch
    ids.tofile(shard)
    start = time.monotonic()
    result = subprocess.run(
        _pretrain_command(2, "--data", str(damaged), "--no-verify", *MODEL, "--batch-size", "4", "--max-iters",
                          "100000", "--eval-interval", "100000", "--out", str(tmp_path / "run"), "--ddp-timeout",
                          "60"),
        env=_env(), capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    seconds = time.monotonic() - start
    assert result.returncode != 0
    assert result.stderr.count("hold token id 60000, beyond the tokenizer's") == 1, result.stderr[-3000:]
    assert "a collective operation failed" in result.stderr, result.stderr[-3000:]  # the other rank's one line
    _no_traceback_from_scratchlm(result.stderr)
    assert seconds < 40, f"the run took {seconds:.0f} s to end (ddp_timeout 60 s, torchrun's grace period 30 s)"
