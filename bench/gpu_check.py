"""Run, on a CUDA GPU, every path of scratchlm that has only ever run on a CPU, and write one JSON of figures.

    python bench/gpu_check.py                        # on a CUDA machine; writes bench/results/gpu_check.json
    python bench/gpu_check.py --out /tmp/gpu.json --only triton kv_cache
    python bench/gpu_check.py --allow-cpu            # no GPU: a dry pass of the same code at tiny sizes

Checks, each timed and recorded (ok, figures, or the first line of its error; one failure does not stop the rest):

- `gpu_preset`: the `gpu` training preset (6 layers, 384 wide, block 256, batch 64) through `scratchlm.train` on
  Tiny Shakespeare for its first steps: tokens/s and MFU against the datasheet bfloat16 peak
  (`scratchlm.pretraining.loop.GPU_PEAK_BF16`), the loss after those steps, peak GPU memory.
- `dtype_compile`: the same first steps in float32, with bfloat16 autocast, and bfloat16 with `torch.compile`: their
  speeds, the compile time, and how far the bfloat16 losses stray from float32's.
- `triton`: the Triton flash-attention kernel (`scratchlm.attention.triton_kernel`) against PyTorch's
  `scaled_dot_product_attention`: the largest difference of the outputs and the forward time of each, causal,
  in float32 (IEEE and TF32) and bfloat16.
- `kv_cache`: `generate` with and without the KV cache on the gpu preset's model (random weights): the same tokens,
  and the speed of each.
- `pretrain_torchrun`: `python -m torch.distributed.run --nproc_per_node=1 -m scratchlm pretrain` on character shards
  of Tiny Shakespeare that it prepares in a temporary folder. With one rank `pretrain` runs without a process group,
  so `nccl_ddp` launches a second one-rank job that joins an NCCL process group, wraps the model in DDP and takes
  training steps with an all-reduce (NCCL on CUDA; gloo in the CPU dry pass).
- `lessons`: each lesson's setup (its code up to `configure_threads()`, run in a fresh namespace) in GPU mode,
  and every size it chooses with `pick(...)`, evaluated as GPU mode would choose it (the `gpu=` value, else the
  `cpu=` one); sizes that need the lesson's later state are listed as such.

The JSON holds the GPU's name, its memory, torch's and CUDA's versions, each check's figures and the peak GPU memory
it allocated. Without CUDA the script says so in one line and exits 1, unless `--allow-cpu`: then it runs the same
code at tiny sizes on the CPU (Triton under its interpreter), which `tests/test_gpu_check.py` runs so the script
cannot rot; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "gpu_check.json"
CHECKS = ("gpu_preset", "dtype_compile", "triton", "kv_cache", "pretrain_torchrun", "nccl_ddp", "lessons")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class Sizes:
    """The sizes of every check: the real ones on a GPU, tiny ones for the CPU dry pass."""

    def __init__(self, dry: bool):
        self.dry = dry
        self.preset = "smoke" if dry else "gpu"
        self.steps = 4 if dry else 40  # the first steps of a run; the first few (warm-up) are left out of tokens/s
        self.attention = [(1, 2, 64, 32)] if dry else [(8, 16, 1024, 64), (4, 16, 4096, 64), (1, 16, 16384, 64)]
        self.attention_repeats = 1 if dry else 20
        self.new_tokens = 16 if dry else 200
        self.pretrain_iters = 6 if dry else 60


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _first_steps(sizes: Sizes, splits: Any, **overrides: Any) -> dict[str, Any]:
    """`train` the preset for `sizes.steps` steps; tokens/s over the second half (compilation and warm-up excluded)."""
    from scratchlm.pretraining.loop import peak_flops_per_device
    from scratchlm.training import Callback, preset, resolve_dtype, train

    device = _device()
    half = sizes.steps // 2

    class Clock(Callback):
        def __init__(self) -> None:
            self.times: dict[int, float] = {}

        def on_step(self, run, result) -> None:
            if run.step in (half, sizes.steps):
                _synchronize()
                self.times[run.step] = time.perf_counter()

    config = preset(
        sizes.preset,
        max_iters=sizes.steps,
        eval_interval=sizes.steps,
        eval_iters=2,
        progress=False,
        device=device.type,
        **overrides,
    )
    clock = Clock()
    _reset_peak()
    start = time.perf_counter()
    result = train(config, splits=splits, callbacks=[clock], device=device)
    wall = time.perf_counter() - start
    tokens_per_s = (sizes.steps - half) * config.tokens_per_step / (clock.times[sizes.steps] - clock.times[half])
    dtype = resolve_dtype(config.dtype, device)
    peak, peak_source = peak_flops_per_device(device, dtype)
    per_token = result.model.flops_per_token()
    return {
        "preset": sizes.preset,
        "dtype": str(dtype).removeprefix("torch.") if dtype is not None else "float32",
        "compile": config.compile,
        "steps": sizes.steps,
        "tokens_per_step": config.tokens_per_step,
        "params": sum(p.numel() for p in result.model.parameters()),
        "flops_per_token": per_token,
        "tokens_per_s": tokens_per_s,
        "mfu": per_token * tokens_per_s / peak if peak else None,
        "peak_flops": peak,
        "peak_source": peak_source,
        "step_losses": [round(x, 5) for x in result.step_losses],
        "val_loss": result.metrics[-1]["val_loss"],
        "wall_s": wall,
        "peak_mib": _peak_mib(),
    }


def check_gpu_preset(sizes: Sizes, splits: Any) -> dict[str, Any]:
    return _first_steps(sizes, splits)


def check_dtype_compile(sizes: Sizes, splits: Any) -> dict[str, Any]:
    runs = {
        "float32": _first_steps(sizes, splits, dtype="float32"),
        "bfloat16": _first_steps(sizes, splits, dtype="bfloat16"),
        "bfloat16_compiled": _first_steps(sizes, splits, dtype="bfloat16", compile=True),
    }
    base = runs["float32"]["step_losses"]
    for name in ("bfloat16", "bfloat16_compiled"):
        runs[name]["max_loss_difference_from_float32"] = max(
            abs(a - b) for a, b in zip(runs[name]["step_losses"], base, strict=True)
        )
    runs["speedup_bfloat16"] = (
        runs["bfloat16"]["tokens_per_s"] / base_rate if (base_rate := runs["float32"]["tokens_per_s"]) else None
    )
    runs["speedup_compiled"] = runs["bfloat16_compiled"]["tokens_per_s"] / runs["bfloat16"]["tokens_per_s"]
    runs["compile_overhead_s"] = runs["bfloat16_compiled"]["wall_s"] - runs["bfloat16"]["wall_s"]
    return runs


def _time_call(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of `fn` over `repeats` calls after one warm-up call."""
    fn()
    _synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_triton(sizes: Sizes) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from scratchlm.attention.triton_kernel import triton_attention

    device = _device()
    rows = []
    settings = [("float32", torch.float32, False), ("tf32", torch.float32, True), ("bfloat16", torch.bfloat16, False)]
    for B, H, T, D in sizes.attention:
        for label, dtype, tf32 in settings:
            g = torch.Generator(device=device).manual_seed(0)
            q, k, v = (torch.randn(B, H, T, D, generator=g, device=device, dtype=dtype) for _ in range(3))
            with torch.no_grad():
                ours = triton_attention(q, k, v, causal=True, allow_tf32=tf32)
                reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
                sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                t_ours = _time_call(
                    lambda q=q, k=k, v=v, tf32=tf32: triton_attention(q, k, v, causal=True, allow_tf32=tf32),
                    sizes.attention_repeats,
                )
                t_sdpa = _time_call(
                    lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    sizes.attention_repeats,
                )
            flops = 4 * B * H * T * T * D / 2  # two products, causal half
            rows.append({
                "shape": [B, H, T, D], "dtype": label,
                "max_abs_error_triton": (ours.double() - reference).abs().max().item(),
                "max_abs_error_sdpa": (sdpa.double() - reference).abs().max().item(),
                "triton_ms": 1000 * t_ours, "sdpa_ms": 1000 * t_sdpa,
                "triton_tflops": flops / t_ours / 1e12, "sdpa_tflops": flops / t_sdpa / 1e12,
            })  # fmt: skip
            tolerance = 2e-2 if dtype == torch.bfloat16 or tf32 else 1e-4
            if rows[-1]["max_abs_error_triton"] > tolerance:
                raise AssertionError(f"triton output off by {rows[-1]['max_abs_error_triton']:.2e} at {rows[-1]}")
    return {"interpreted": device.type != "cuda", "rows": rows}


def check_kv_cache(sizes: Sizes) -> dict[str, Any]:
    import dataclasses

    import torch

    from scratchlm.generation import generate
    from scratchlm.model import GPT
    from scratchlm.training import PRESETS

    device = _device()
    base = PRESETS[sizes.preset].model_config(vocab_size=65)
    config = dataclasses.replace(base, block_size=max(base.block_size, 16 + sizes.new_tokens), dropout=0.0)
    torch.manual_seed(0)
    model = GPT(config).to(device).eval()
    prompt = torch.randint(0, 65, (1, 16), device=device)
    out = {}
    for use_cache in (True, False):
        _reset_peak()

        def run(use_cache: bool = use_cache) -> torch.Tensor:
            return generate(model, prompt, sizes.new_tokens, seed=0, use_cache=use_cache)

        t = _time_call(run, 2)
        out["cache" if use_cache else "no_cache"] = {
            "s": t, "tokens_per_s": sizes.new_tokens / t, "peak_mib": _peak_mib(), "tokens": run()
        }  # fmt: skip
    same = torch.equal(out["cache"].pop("tokens"), out["no_cache"].pop("tokens"))
    if not same:
        raise AssertionError("generate gave different tokens with and without the KV cache")
    return {
        "new_tokens": sizes.new_tokens,
        "same_tokens": same,
        "speedup": out["no_cache"]["s"] / out["cache"]["s"],
        **out,
    }


def _child_env() -> dict[str, str]:
    env = dict(os.environ, SCRATCHLM_THREADS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", *args]


def check_pretrain_torchrun(sizes: Sizes, shards: str, tmp: Path) -> dict[str, Any]:
    out_dir = tmp / "pretrain"
    device = _device().type
    command = _torchrun("-m", "scratchlm", "pretrain", "--data", shards, "--preset", sizes.preset,
                        "--max-iters", str(sizes.pretrain_iters), "--eval-interval", str(sizes.pretrain_iters),
                        "--eval-iters", "2", "--device", device, "--out", str(out_dir), "--no-progress")  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=_child_env(), capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:] or done.stdout[-300:]}")
    metrics = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = metrics[-1]
    return {"command": " ".join(command[1:]), "wall_s": wall, "step": last["step"], "val_loss": last["val_loss"],
            "val_bpb": last.get("val_bpb"), "tokens_per_s": last.get("tokens_per_s"), "mfu": last.get("mfu"),
            "checkpoint": (out_dir / "ckpt.pt").is_file()}  # fmt: skip


def nccl_worker(shards: str, steps: int, preset_name: str) -> None:
    """One torchrun rank: join a process group (NCCL on CUDA), DDP-wrap the preset's model, take `steps` steps."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from scratchlm.model import GPT
    from scratchlm.pretraining.loader import ShardLoader
    from scratchlm.pretraining.shards import ShardIndex
    from scratchlm.training import PRESETS, autocast_for, make_optimizer, train_step

    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    index = ShardIndex.open(shards, verify=False)
    config = PRESETS[preset_name]
    torch.manual_seed(0)
    model = GPT(config.model_config(index.vocab_size)).to(device)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    optimizer = make_optimizer(model, config, device)
    loader = ShardLoader(index, "train", config.model.block_size, config.batch_size, rank=dist.get_rank(),
                         world_size=dist.get_world_size())  # fmt: skip
    autocast = autocast_for(device, "auto")
    losses = []
    for _ in range(steps):
        x, y = (t.to(device) for t in loader.next_batch())
        result = train_step(ddp, optimizer, [(x, y)], lr=1e-3, grad_clip=1.0, autocast=autocast, no_sync=ddp.no_sync)
        losses.append(float(result.loss))
    flat = torch.ones(1 << 20, device=device)
    dist.all_reduce(flat)
    print(json.dumps({"backend": backend, "world_size": dist.get_world_size(), "losses": losses,
                      "all_reduce_ok": bool(flat.eq(dist.get_world_size()).all())}))  # fmt: skip
    dist.destroy_process_group()


def check_nccl_ddp(sizes: Sizes, shards: str) -> dict[str, Any]:
    command = _torchrun(__file__, "--nccl-worker", shards, "--steps", str(sizes.pretrain_iters // 2),
                        "--preset", sizes.preset)  # fmt: skip
    done = subprocess.run(command, env=_child_env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:] or done.stdout[-300:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["all_reduce_ok"]:
        raise AssertionError(f"the all-reduce over {result['world_size']} rank(s) gave a wrong sum")
    return result


def _setup_cell(source: str) -> str:
    """The lesson's code up to and including the cell (`# %%`) that calls `configure_threads()`: its setup."""
    cells = re.split(r"(?m)^(?=# %%)", source)
    for i, cell in enumerate(cells):
        if "configure_threads(" in cell:
            return "".join(cells[: i + 1])
    raise ValueError("no cell calls configure_threads(): the lesson has no setup cell")


def _gpu_choice(call: ast.Call) -> ast.expr | None:
    keywords = {k.arg: k.value for k in call.keywords}
    return keywords.get("gpu", keywords.get("cpu"))


def check_lessons(dry: bool) -> dict[str, Any]:
    """Run each lesson's setup in GPU mode and evaluate its `pick(...)` sizes as GPU mode would choose them."""
    import matplotlib

    import scratchlm.runtime

    matplotlib.use("Agg")
    lessons = {}
    real_run_mode = scratchlm.runtime.run_mode
    if dry:  # on the CPU, make pick() and the lessons' MODE take their GPU branch
        scratchlm.runtime.run_mode = lambda device=None: "gpu"
    try:
        for path in sorted((ROOT / "lessons_src").glob("[0-9][0-9]_*.py")):
            source = path.read_text(encoding="utf-8")
            tree, lines = ast.parse(source), source.splitlines()
            namespace: dict[str, Any] = {"__name__": f"lesson_{path.stem}"}
            start = time.perf_counter()
            with contextlib.redirect_stdout(open(os.devnull, "w")) as quiet:
                exec(compile(_setup_cell(source), str(path), "exec"), namespace)
            quiet.close()
            sizes, unresolved = {}, []
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "pick"]
            for call in sorted(calls, key=lambda c: c.lineno):
                expr = _gpu_choice(call)
                where = f"{call.lineno}: {lines[call.lineno - 1].strip()[:80]}"
                try:
                    value = eval(compile(ast.Expression(expr), str(path), "eval"), dict(namespace))
                    sizes[where] = value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
                except NameError as e:
                    unresolved.append(f"{where}: needs {e.name}")
            lessons[path.stem] = {"mode": namespace.get("MODE"), "device": str(namespace.get("device")),
                                  "setup_s": time.perf_counter() - start, "gpu_sizes": sizes,
                                  "needs_lesson_state": unresolved}  # fmt: skip
            if namespace.get("MODE") != "gpu":
                raise AssertionError(f"{path.name}: its setup chose mode {namespace.get('MODE')!r}, not 'gpu'")
    finally:
        scratchlm.runtime.run_mode = real_run_mode
    return lessons


def environment() -> dict[str, Any]:
    import torch

    info = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "platform": platform.platform(), "cpus": os.cpu_count(), "cuda_available": torch.cuda.is_available(),
    }  # fmt: skip
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name, gpu_memory_gib=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version(),
        )  # fmt: skip
    return info


def _compile_without_codegen() -> None:
    """CPU dry pass: `torch.compile` with dynamo's eager backend, which captures the graph (where a model breaks
    compilation) but generates no code (inductor's C++ build takes a minute on a CPU)."""
    import functools

    import torch

    torch.compile = functools.partial(torch.compile, backend="eager")


def run_checks(dry: bool, only: list[str] | None, out: Path) -> dict[str, Any]:
    from scratchlm.data import load_splits
    from scratchlm.pretraining.shards import prepare
    from scratchlm.runtime import configure_threads

    configure_threads()
    sizes = Sizes(dry)
    report: dict[str, Any] = {"dry_cpu_pass": dry, "environment": environment(), "checks": {}}
    started = time.perf_counter()
    splits = load_splits("tinyshakespeare")
    with tempfile.TemporaryDirectory(prefix="scratchlm-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        shards = str(tmp / "shards")
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "gpu_preset": lambda: check_gpu_preset(sizes, splits),
            "dtype_compile": lambda: check_dtype_compile(sizes, splits),
            "triton": lambda: check_triton(sizes),
            "kv_cache": lambda: check_kv_cache(sizes),
            "pretrain_torchrun": lambda: check_pretrain_torchrun(sizes, shards, tmp),
            "nccl_ddp": lambda: check_nccl_ddp(sizes, shards),
            "lessons": lambda: check_lessons(dry),
        }
        if not only or {"pretrain_torchrun", "nccl_ddp"} & set(only):
            prepare("tinyshakespeare", "char", shards, workers=1, progress=False)
        for name in only or CHECKS:
            start = time.perf_counter()
            try:
                figures = steps[name]()
                entry = {"ok": True, **figures}
            except Exception as e:  # a check that fails is recorded and the others still run
                lines = [line for line in f"{type(e).__name__}: {e}".splitlines() if line.strip()]
                entry = {"ok": False, "error": lines[0][:500], "traceback": traceback.format_exc()[-2000:]}
            entry["check_s"] = time.perf_counter() - start
            report["checks"][name] = entry
            print(
                f"{name:<18} {'ok' if entry['ok'] else 'FAILED: ' + entry['error']}  ({entry['check_s']:.1f} s)",
                flush=True,
            )
    report["total_s"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the JSON to write (default {DEFAULT_OUT})")
    parser.add_argument(
        "--allow-cpu", action="store_true", help="without CUDA, a dry pass of the same code at tiny sizes"
    )
    parser.add_argument("--only", nargs="+", choices=CHECKS, help="run only these checks")
    parser.add_argument("--nccl-worker", metavar="SHARDS", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="gpu", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nccl_worker:
        nccl_worker(args.nccl_worker, args.steps, args.preset)
        return 0
    if not _cuda_available() and not args.allow_cpu:
        print("gpu_check: CUDA is not available on this machine; nothing checked (--allow-cpu runs a dry CPU pass)")
        return 1
    dry = not _cuda_available()
    if dry:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported: run the kernel interpreted
        _compile_without_codegen()
    report = run_checks(dry, args.only, args.out)
    failed = [name for name, entry in report["checks"].items() if not entry["ok"]]
    passed = len(report["checks"]) - len(failed)
    print(f"{passed} of {len(report['checks'])} checks passed in {report['total_s']:.0f} s; figures in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
