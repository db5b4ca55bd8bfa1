"""bench/gpu_check.py: without CUDA it refuses in one line; with --allow-cpu its CPU dry pass runs every check."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run for real")
def test_without_cuda_it_says_so_in_one_line_and_fails(gpu_check, tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "CUDA is not available" in out[0]
    assert not (tmp_path / "r.json").exists()


def test_the_cpu_dry_pass_runs_every_check(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", torch.compile)  # the dry pass patches it; undone after the test
    out = tmp_path / "r.json"
    assert gpu_check.main(["--allow-cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["dry_cpu_pass"] is True
    assert set(report["checks"]) == set(gpu_check.CHECKS)
    assert all(entry["ok"] for entry in report["checks"].values()), report["checks"]
    checks = report["checks"]
    assert checks["gpu_preset"]["tokens_per_s"] > 0 and checks["gpu_preset"]["mfu"] > 0
    assert checks["kv_cache"]["same_tokens"]
    assert checks["pretrain_torchrun"]["checkpoint"] and checks["pretrain_torchrun"]["step"] > 0
    assert checks["nccl_ddp"]["backend"] == "gloo"
    lessons = checks["lessons"]
    assert {k for k in lessons if k[:2].isdigit()} == {p.stem for p in SCRIPT.parents[1].glob("lessons_src/[0-9]*.py")}
    assert all(v["mode"] == "gpu" for k, v in lessons.items() if k[:2].isdigit())
