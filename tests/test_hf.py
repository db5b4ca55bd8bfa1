import pytest
import torch

from scratchlm.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")

from scratchlm.hf import from_hf, to_hf  # noqa: E402

CONFIG = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32)


def randomise(model: torch.nn.Module) -> None:
    """Larger-than-init random weights everywhere (incl. biases and LayerNorms), so nothing matches by luck."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)


def test_ours_to_hf_gives_the_same_logits():
    torch.manual_seed(0)
    ours = GPT(CONFIG).eval()
    randomise(ours)
    hf = to_hf(ours)
    idx = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[0], atol=1e-5, rtol=0)
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()


def test_hf_to_ours_gives_the_same_logits():
    torch.manual_seed(1)
    hf_config = transformers.GPT2Config(
        vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None
    )
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    randomise(hf)
    ours = from_hf(hf)
    idx = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)
    assert ours.config == GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32)


def test_round_trip_is_exact():
    torch.manual_seed(2)
    ours = GPT(CONFIG)
    back = from_hf(to_hf(ours))
    for (name, a), b in zip(ours.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_models_without_bias_do_not_convert():
    from scratchlm.errors import ConfigError

    with pytest.raises(ConfigError, match="bias"):
        to_hf(GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=4, n_embd=32, bias=False)))
