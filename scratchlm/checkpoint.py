"""Saving and loading training state: everything needed to sample from a model or to resume its training.

A checkpoint is one `torch.save` file holding only tensors and plain containers (dicts, lists, tuples,
numbers, strings), so `load` can use `torch.load(weights_only=True)`, which never runs code from the file:

    format, version      "scratchlm-checkpoint", 1: what this file is, so a foreign file is named as such
    model_config         GPTConfig as a dict;  model: the state_dict
    optimizer            optimizer state_dict (or None)
    config               the TrainConfig as a dict (or None)
    tokenizer            tokenizer.to_dict() (or None)
    step                 optimizer steps done
    rng                  torch CPU/CUDA, Python `random`, NumPy and data-sampling generator states
    metrics              the evaluation records so far;  extra: anything else plain
    checksum             sha256 over all of the above: torch does not verify the bytes it reads, so without
                         it a flipped bit in the weights would load silently

Writes are atomic: the file is written to a temporary name in the same folder, flushed to disk, then renamed
over the old one, so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from scratchlm.errors import CheckpointError, ScratchLMError
from scratchlm.files import atomic_write
from scratchlm.model import GPT, GPTConfig

FORMAT = "scratchlm-checkpoint"
VERSION = 1
FILENAME = "ckpt.pt"


def resolve_path(path: str | Path) -> Path:
    """A checkpoint path may name the file or the folder holding `ckpt.pt`."""
    path = Path(path)
    if path.is_dir() or (not path.suffix and not path.exists()):
        return path / FILENAME
    return path


def _plain(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if is_dataclass(config) and not isinstance(config, type):
        return asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"config must be a dataclass or a dict, got {type(config).__name__}")


def _digest(obj: Any, h: Any = None) -> str:
    """sha256 of a nest of dicts, lists, tuples, tensors and primitives, in their stored order."""
    h = h if h is not None else hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _digest(key, h)
            _digest(value, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for value in obj:
            _digest(value, h)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    return h.hexdigest()


def capture_rng_state(data_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a training run draws from, as tensors and plain values."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        # NumPy's state holds an ndarray, which weights_only loading refuses; a tensor is fine
        "numpy": (np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
        "data": data_generator.get_state() if data_generator is not None else None,
    }
    return state


def restore_rng_state(state: dict[str, Any], data_generator: torch.Generator | None = None) -> None:
    """Put back the random states saved by `capture_rng_state` (a malformed state raises CheckpointError)."""
    try:
        _restore_rng_state(state, data_generator)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"the checkpoint's random-number state is malformed ({type(e).__name__}: {e})") from None


def _restore_rng_state(state: dict[str, Any], data_generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    if data_generator is not None and state.get("data") is not None:
        data_generator.set_state(state["data"].cpu())


@dataclass
class Checkpoint:
    """What `load` returns: the saved fields, plus helpers to rebuild the model and tokenizer."""

    path: Path
    model_config: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    config: dict[str, Any] | None
    tokenizer_state: dict[str, Any] | None
    step: int
    rng: dict[str, Any] | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def gpt_config(self) -> GPTConfig:
        try:
            config = GPTConfig(**self.model_config)
        except (TypeError, ScratchLMError) as e:
            raise CheckpointError(f"{self.path}: its model config is not usable by this scratchlm ({e})") from None
        if config.vocab_size is None:
            raise CheckpointError(f"{self.path}: its model config has no vocab_size")
        return config

    def build_model(self, device: torch.device | str = "cpu") -> GPT:
        """A GPT with the saved weights, on `device`, in eval mode."""
        model = GPT(self.gpt_config())
        load_model_state(model, self.model_state, self.path)
        return model.to(device).eval()

    def build_tokenizer(self):
        """The saved tokenizer (raises CheckpointError when the checkpoint has none)."""
        from scratchlm.tokenizers import tokenizer_from_dict

        if self.tokenizer_state is None:
            raise CheckpointError(f"{self.path} holds no tokenizer")
        try:
            tokenizer = tokenizer_from_dict(self.tokenizer_state)
        except (ScratchLMError, TypeError, ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{self.path}: its tokenizer cannot be rebuilt ({e})") from None
        if tokenizer.vocab_size > self.gpt_config().vocab_size:
            raise CheckpointError(
                f"{self.path}: its tokenizer has {tokenizer.vocab_size} ids but its model only "
                f"{self.gpt_config().vocab_size} embeddings"
            )
        return tokenizer


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path | str = "checkpoint") -> None:
    """`model.load_state_dict(state)`, with a one-line CheckpointError when the two do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise CheckpointError(f"{path} does not fit this model: {detail[:300]}") from None


def save(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    config: Any = None,
    tokenizer: Any = None,
    step: int = 0,
    *,
    data_generator: torch.Generator | None = None,
    metrics: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to `path` (a file, or a folder that gets `ckpt.pt`). Returns the file.

    model must have a `config` GPTConfig (a `torch.compile`d model is unwrapped). config: the TrainConfig
    (or a dict). tokenizer: anything with `to_dict()`. data_generator: the generator that samples batches.
    """
    path = resolve_path(path)
    model = getattr(model, "_orig_mod", model)
    model_config = getattr(model, "config", None)
    if not isinstance(model_config, GPTConfig):
        raise TypeError("save() needs a model with a GPTConfig `config` attribute")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": asdict(model_config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "config": _plain(config),
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "step": int(step),
        "rng": capture_rng_state(data_generator),
        "metrics": list(metrics or []),
        "extra": dict(extra or {}),
    }
    payload["checksum"] = _digest(payload)
    with atomic_write(path, "wb", error=CheckpointError) as f:
        try:
            torch.save(payload, f)
        except RuntimeError as e:  # torch reports a failed write (a full disk) as RuntimeError, not OSError
            raise CheckpointError(f"could not write {path}: {_write_failure(e, path.parent)}") from None
    return path


FULL_DISK_BYTES = 1 << 20  # less free space than this after a failed write: the disk is what failed


def _write_failure(error: RuntimeError, folder: Path) -> str:
    """Why torch.save failed, in words: a full disk reads as "unexpected pos 92224 vs 92112" or "failed writing
    file" from torch's zip writer, so when the folder's disk is (nearly) full, say that instead."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < FULL_DISK_BYTES:
        return f"No space left on device ({free:,} bytes free in {folder})"
    return _reason(error)


def _reason(error: BaseException) -> str:
    """One short line saying why torch.load failed."""
    text = str(error)
    if "Weights only load failed" in text:
        return "it holds something other than tensors and plain data (damaged, or pickled Python objects)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    return first if len(first) <= 160 else first[:157] + "..."


def load(path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint (a file, or a folder holding `ckpt.pt`); tensors are mapped to `device`.

    Anything that is not a readable scratchlm checkpoint of a supported version raises a one-line
    `CheckpointError` that says what is wrong, never a pickle traceback.
    """
    path = resolve_path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt, truncated or not a scratchlm file): {_reason(e)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            hint = " (it looks like a bare state_dict)"
        raise CheckpointError(f"{path} is not a scratchlm checkpoint{hint}")
    version = payload.get("version")
    if version != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this scratchlm reads version {VERSION}"
        )
    stored = payload.pop("checksum", None)
    if stored != _digest(payload):
        raise CheckpointError(f"{path} is corrupt: its contents do not match the checksum stored when it was saved")
    required = ("model_config", "model", "step")
    missing = [k for k in required if k not in payload]
    if missing or not isinstance(payload["model_config"], dict) or not isinstance(payload["model"], dict):
        raise CheckpointError(f"{path} is an incomplete checkpoint (missing or malformed: {', '.join(missing)})")
    _check_schema(payload, path)
    return Checkpoint(
        path=path,
        model_config=payload["model_config"],
        model_state=payload["model"],
        optimizer_state=payload.get("optimizer"),
        config=payload.get("config"),
        tokenizer_state=payload.get("tokenizer"),
        step=int(payload["step"]),
        rng=payload.get("rng"),
        metrics=list(payload.get("metrics") or []),
        extra=dict(payload.get("extra") or {}),
    )


_PLAIN_FIELDS = {"optimizer": dict, "config": dict, "tokenizer": dict, "rng": dict, "metrics": list, "extra": dict}


def _check_schema(payload: dict[str, Any], path: Path) -> None:
    """Refuse, with one line, a checkpoint whose checksum is right but whose contents are not what `save` writes:
    the checksum proves the bytes are intact, not that whoever wrote them wrote a sensible checkpoint."""
    step = payload["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: its step must be a non-negative integer, got {step!r}")
    for name, kind in _PLAIN_FIELDS.items():
        value = payload.get(name)
        if value is not None and not isinstance(value, kind):
            raise CheckpointError(f"{path}: its {name} must be a {kind.__name__}, got {type(value).__name__}")
    if not all(isinstance(m, dict) for m in payload.get("metrics") or []):
        raise CheckpointError(f"{path}: its metrics must be a list of records (dicts)")
    state = payload["model"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: its model state must map names to tensors")
    config = Checkpoint(path, payload["model_config"], state, None, None, None, step, None).gpt_config()
    with torch.device("meta"):  # the model's shapes without allocating it: a crafted vocab_size of 1e11 costs nothing
        expected = {name: tuple(t.shape) for name, t in GPT(config).state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        wrong = sorted(set(expected) ^ set(found)) or [n for n in expected if expected[n] != found[n]]
        raise CheckpointError(
            f"{path}: its weights do not fit its model config ({wrong[0]}: config says "
            f"{expected.get(wrong[0])}, the file holds {found.get(wrong[0])})"
        )
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise CheckpointError(
            f"{path}: its weights hold NaN or infinite values (the run had diverged); use an earlier checkpoint"
        )


def load_model(path: str | Path, device: torch.device | str = "cpu"):
    """Shortcut for sampling: `(model, tokenizer)` from a checkpoint, the model in eval mode on `device`."""
    ckpt = load(path, device="cpu")
    return ckpt.build_model(device), ckpt.build_tokenizer()
