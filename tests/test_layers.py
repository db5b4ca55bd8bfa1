"""scratchlm.layers: the CPU fast paths compute the functions of F.linear and F.gelu(approximate="tanh")."""

import pytest
import torch
import torch.nn.functional as F

from scratchlm import layers
from scratchlm.model import GPT, GPTConfig

needs_onednn = pytest.mark.skipif(layers._onednn_matmul is None, reason="this PyTorch has no oneDNN")


def _grads(fn, *tensors):
    tensors = [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]
    out = fn(*tensors)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))  # the same in any dtype
    out.backward(upstream.to(out.dtype))
    return out.detach(), [t.grad for t in tensors if t is not None]


@pytest.mark.parametrize(
    "shape, out_features, bias, transposed",
    [
        ((12, 64, 128), 512, True, False),
        ((768, 512), 128, True, False),
        ((12, 64, 128), 65, False, False),
        ((64, 768), 384, True, True),
    ],
)
def test_linear_matches_f_linear(shape, out_features, bias, transposed):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g)
    if transposed:  # a non-contiguous input
        x = torch.randn(*reversed(shape), generator=g).t()
    w = torch.randn(out_features, shape[-1], generator=g) * 0.05
    b = torch.randn(out_features, generator=g) if bias else None
    out, grads = _grads(layers.linear, x, w, b)
    ref_out, ref_grads = _grads(F.linear, *(t.double() if t is not None else None for t in (x, w, b)))
    torch.testing.assert_close(out, ref_out.float(), rtol=1e-5, atol=1e-5)
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref.float(), rtol=1e-5, atol=1e-4)


@pytest.fixture(autouse=True)
def own_cpu_paths(monkeypatch):
    """The module's own CPU paths are tested on every machine, including Intel's, where they are not taken."""
    monkeypatch.setattr(layers, "OWN_CPU_PATHS", True)


@pytest.mark.parametrize(
    "vendor, pays", [("GenuineIntel", False), ("Intel64 Family 6 Model 143, GenuineIntel", False),
                     ("AuthenticAMD", True), ("", True)],
)  # fmt: skip
def test_the_own_cpu_paths_are_taken_everywhere_but_on_intel(vendor, pays):
    assert layers.own_cpu_paths_pay(vendor) is pays


@needs_onednn
def test_linear_uses_onednn_only_where_it_pays(monkeypatch):
    calls = []

    def counting(*args):
        calls.append(args[0].shape)
        return real(*args)

    real = layers._onednn_matmul
    monkeypatch.setattr(layers, "_onednn_matmul", counting)
    big, w = torch.randn(768, 128), torch.randn(512, 128)
    layers.linear(big, w)
    assert len(calls) == 1
    layers.linear(torch.randn(1, 128), w)  # one token: MKL's lower overhead wins
    layers.linear(big.double(), w.double())
    layers.linear(big.bfloat16(), w.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layers.linear(big, w)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # PyTorch's own switch for oneDNN
    layers.linear(big, w)
    assert len(calls) == 1
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", True)
    monkeypatch.setattr(layers, "OWN_CPU_PATHS", False)  # an Intel processor
    layers.linear(big, w)
    assert len(calls) == 1


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0, 20.0])
def test_gelu_tanh_matches_f_gelu(scale):
    x = torch.randn(12, 64, 512, generator=torch.Generator().manual_seed(2)) * scale
    out, (grad,) = _grads(layers.gelu_tanh, x)
    ref_out, (ref_grad,) = _grads(lambda t: F.gelu(t, approximate="tanh"), x.double())
    torch.testing.assert_close(out, ref_out.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad.float(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(layers.gelu_tanh(x), out)


def test_gelu_takes_the_sigmoid_path_only_where_it_pays(monkeypatch):
    calls = []
    real = layers._gelu_gate
    monkeypatch.setattr(layers, "_gelu_gate", lambda x: calls.append(x.shape) or real(x))
    big = torch.randn(12, 64, 512)
    layers.gelu_tanh(big)
    layers.gelu_tanh(torch.randn(4, 8))  # small: ATen's single pass
    assert len(calls) == 1
    monkeypatch.setattr(layers, "OWN_CPU_PATHS", False)  # an Intel processor
    torch.testing.assert_close(layers.gelu_tanh(big), F.gelu(big, approximate="tanh"))
    assert len(calls) == 1


def test_gpt_loss_and_gradients_match_float64():
    """The whole model on the CPU fast paths (float32) against the same weights in float64 (plain PyTorch)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=128))
    x, y = torch.randint(0, 65, (12, 64)), torch.randint(0, 65, (12, 64))
    _, loss = model(x, y)
    loss.backward()
    reference = GPT(model.config).double()
    reference.load_state_dict(model.state_dict())
    _, ref_loss = reference(x, y)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss.float(), rtol=1e-6, atol=1e-6)
    for (name, p), ref in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, ref.grad.float(), rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.usefixtures("cpp_compiler")
def test_gelu_tanh_under_torch_compile_is_the_same_function():
    """Under `torch.compile` on the CPU `gelu_tanh` is written out as x * sigmoid(2z) for Inductor to fuse: the
    compiled forward and backward still equal GPT-2's tanh GELU (float64 reference), over the range a model sees."""
    x = torch.linspace(-12, 12, 4096).reshape(64, 64)
    out, (grad,) = _grads(torch.compile(layers.gelu_tanh, fullgraph=True), x)
    ref_out, (ref_grad,) = _grads(lambda t: F.gelu(t, approximate="tanh"), x.double())
    torch.testing.assert_close(out, ref_out.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad.float(), rtol=1e-5, atol=1e-5)
