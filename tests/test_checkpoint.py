import os
import struct
import zipfile

import pytest
import torch

from scratchlm import checkpoint
from scratchlm.errors import CheckpointError
from scratchlm.model import GPT, GPTConfig
from scratchlm.tokenizers.char import CharTokenizer
from scratchlm.training import TrainConfig

CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)


def model_and_optimizer(seed: int = 0) -> tuple[GPT, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = GPT(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 11, (2, 8))
    model(x, x)[1].backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_everything(tmp_path):
    model, optimizer = model_and_optimizer()
    tokenizer = CharTokenizer.from_text("abcdefghijk")
    generator = torch.Generator().manual_seed(5)
    metrics = [{"step": 7, "val_loss": 2.5}]
    path = checkpoint.save(
        tmp_path, model, optimizer, TrainConfig(), tokenizer, 7, data_generator=generator, metrics=metrics
    )
    assert path == tmp_path / "ckpt.pt"

    ckpt = checkpoint.load(tmp_path)
    assert ckpt.step == 7 and ckpt.metrics == metrics
    assert ckpt.config["betas"] == (0.9, 0.99) and ckpt.config["data"] == "tinyshakespeare"
    restored = ckpt.build_model()
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert restored.lm_head.weight is restored.transformer.wte.weight  # still tied after loading
    assert ckpt.build_tokenizer().encode("cab") == tokenizer.encode("cab")
    fresh = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    fresh.load_state_dict(ckpt.optimizer_state)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])

    expected = generator.get_state()
    checkpoint.restore_rng_state(ckpt.rng, other := torch.Generator())
    assert torch.equal(other.get_state(), expected)


def test_rng_states_are_restored(tmp_path):
    model, _ = model_and_optimizer()
    checkpoint.save(tmp_path, model)
    expected = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    checkpoint.restore_rng_state(checkpoint.load(tmp_path).rng)
    again = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer = model_and_optimizer(seed=0)
    checkpoint.save(tmp_path, model, optimizer, step=1)
    newer, _ = model_and_optimizer(seed=1)

    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 a few bytes of a checkpoint that never finishes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(CheckpointError, match="No space left on device"):
        checkpoint.save(tmp_path, newer, optimizer, step=2)
    monkeypatch.setattr(torch, "save", real_save)

    ckpt = checkpoint.load(tmp_path)
    assert ckpt.step == 1
    assert torch.equal(ckpt.model_state["transformer.wte.weight"], model.transformer.wte.weight)
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, _ = model_and_optimizer()
    checkpoint.save(tmp_path, model, step=1)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, model, step=2)
    monkeypatch.undo()
    assert checkpoint.load(tmp_path).step == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def one_line_error(path) -> str:
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(path)
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_missing_file(tmp_path):
    assert "no checkpoint at" in one_line_error(tmp_path / "nothing-here")


def test_truncated_file(tmp_path):
    model, optimizer = model_and_optimizer()
    path = checkpoint.save(tmp_path, model, optimizer)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "not a readable checkpoint" in one_line_error(path)


def test_corrupt_tensor_bytes_are_detected(tmp_path):
    model, optimizer = model_and_optimizer()
    path = checkpoint.save(tmp_path, model, optimizer)
    # flip bytes in the middle of the largest tensor's storage, which torch.load itself does not verify
    # (a regression: flipping "the middle of the file" could land in a zip header torch never reads)
    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[entry.header_offset + 26 : entry.header_offset + 30])
    start = entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2
    data[start : start + 8] = bytes(b ^ 0xFF for b in data[start : start + 8])
    path.write_bytes(bytes(data))
    assert "is corrupt" in one_line_error(path)


def test_random_bytes_and_empty_file(tmp_path):
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 8)
    assert "not a readable checkpoint" in one_line_error(tmp_path / "random.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "not a readable checkpoint" in one_line_error(tmp_path / "empty.pt")


def test_bare_state_dict_is_named_as_such(tmp_path):
    model, _ = model_and_optimizer()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    assert "not a scratchlm checkpoint (it looks like a bare state_dict)" in one_line_error(tmp_path / "weights.pt")


def test_pickled_module_is_refused_without_unpickling(tmp_path):
    model, _ = model_and_optimizer()
    torch.save(model, tmp_path / "module.pt")
    assert "not a readable checkpoint" in one_line_error(tmp_path / "module.pt")


def test_newer_format_version(tmp_path):
    torch.save({"format": checkpoint.FORMAT, "version": 99}, tmp_path / "future.pt")
    assert "format version 99" in one_line_error(tmp_path / "future.pt")


def test_checkpoint_that_does_not_fit_the_model(tmp_path):
    model, _ = model_and_optimizer()
    checkpoint.save(tmp_path, model)
    other = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        checkpoint.load_model_state(other, checkpoint.load(tmp_path).model_state, tmp_path)
