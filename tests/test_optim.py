"""Muon from scratch: the Newton–Schulz iteration keeps its promised band, one step equals a hand-written step,
the parameter split, fused q/k/v, and Muon inside the one training loop (accumulation, resume, CLI, bad values)."""

import copy
import functools
import math

import pytest
import torch
import torch.nn as nn

from scratchlm.cli import main
from scratchlm.data import get_batch
from scratchlm.errors import ConfigError
from scratchlm.model import GPT, GPTConfig
from scratchlm.optim import (
    QUINTIC,
    QUINTIC_BAND,
    QUINTIC_FLOOR,
    CombinedOptimizer,
    Muon,
    hidden_matrices,
    newton_schulz,
    quintic_on_singular_values,
    split_parameters,
)
from scratchlm.training import TrainConfig, make_optimizer, train, train_step

CPU = torch.device("cpu")
SHAPES = [(48, 48), (24, 96), (96, 24)]  # square, wide, tall


def _with_condition(rows: int, cols: int, condition: float, seed: int) -> torch.Tensor:
    """A random (rows, cols) matrix whose singular values run log-evenly from 1 down to 1/condition."""
    generator = torch.Generator().manual_seed(seed)
    r = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, r, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, r, generator=generator, dtype=torch.float64))
    s = torch.logspace(0, -math.log10(condition), r, dtype=torch.float64)
    return (u * s) @ v.T


def _matrices():
    for i, shape in enumerate(SHAPES):
        yield f"gaussian{shape}", torch.randn(*shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
        for condition in (1e4, 1e7):
            yield f"condition {condition:g} {shape}", _with_condition(*shape, condition, seed=i)


MATRICES = dict(_matrices())


# the iteration


def test_the_band_of_the_quintic_coefficients_on_a_fine_grid():
    """The module's promise, checked on the scalar map itself: p applied 5 times sends [FLOOR, 1] into the band,
    and nothing in (0, 1] above its top; just below the floor the band is left (the floor is tight)."""
    x = torch.logspace(-9, 0, 400_001, dtype=torch.float64)
    y = quintic_on_singular_values(x)
    above = x >= QUINTIC_FLOOR
    assert QUINTIC_BAND[0] <= y[above].min() and y.max() <= QUINTIC_BAND[1]
    assert y[above].min() < QUINTIC_BAND[0] + 0.005 and y.max() > QUINTIC_BAND[1] - 0.01  # the band is tight
    assert quintic_on_singular_values(torch.tensor(QUINTIC_FLOOR * 0.9, dtype=torch.float64)) < QUINTIC_BAND[0]
    assert quintic_on_singular_values(torch.tensor(1e-6, dtype=torch.float64)) == pytest.approx(
        1e-6 * QUINTIC[0] ** 5, rel=1e-6
    )  # far below the floor a direction is only amplified, 3.4445^5 = 485 times


@pytest.mark.parametrize("name", MATRICES)
def test_newton_schulz_applies_the_polynomial_to_the_singular_values(name):
    """NS(G) = U p⁵(S / ‖G‖_F) Vᵀ: the same singular vectors, each singular value mapped by the scalar iteration."""
    G = MATRICES[name]
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    expected = (U * quintic_on_singular_values(S / torch.linalg.matrix_norm(G))) @ Vh
    torch.testing.assert_close(newton_schulz(G.float()).double(), expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize(("dtype", "slack"), [(torch.float32, 1e-4), (torch.bfloat16, 0.04)])
@pytest.mark.parametrize("name", MATRICES)
def test_newton_schulz_output_lies_in_the_promised_band(name, dtype, slack):
    """Along every direction of G with σ ≥ FLOOR ‖G‖_F the output's gain lies in the band, and no singular value
    of the output exceeds its top; on ill-conditioned G (1e4, 1e7) the weakest directions stay far below it.
    bfloat16 (the GPU's choice) widens the band by its rounding, 0.04 at most here."""
    G = MATRICES[name]
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    out = newton_schulz(G.float(), dtype=dtype).double()
    gains = (U.T @ out @ Vh.T).diagonal()  # = p⁵(σ / ‖G‖_F) along each singular pair of G
    strong = S / torch.linalg.matrix_norm(G) >= QUINTIC_FLOOR
    low, high = QUINTIC_BAND
    assert low - slack <= gains[strong].min() and torch.linalg.svdvals(out).max() <= high + slack
    if "condition" in name and dtype is torch.float32:  # the weakest directions: amplified, not orthogonalised
        assert gains[-1] < 0.05


def test_a_tall_matrix_is_the_transpose_of_its_wide_twin_and_zero_stays_zero():
    G = MATRICES["gaussian(96, 24)"].float()
    assert torch.equal(newton_schulz(G), newton_schulz(G.T.contiguous()).T)
    assert torch.equal(newton_schulz(torch.zeros(4, 6)), torch.zeros(4, 6))


# one Muon step, by hand


def _reference_orthogonalise(d: torch.Tensor) -> torch.Tensor:
    """The quintic iteration written out in float64, independently of the library."""
    x = d.double()
    if x.shape[0] > x.shape[1]:
        return _reference_orthogonalise(d.T).T
    x = x / x.norm()
    for _ in range(5):
        gram = x @ x.T
        x = 3.4445 * x - 4.7750 * gram @ x + 2.0315 * gram @ gram @ x
    return x


@pytest.mark.parametrize("nesterov", [True, False])
def test_two_muon_steps_equal_hand_written_steps(nesterov):
    """Momentum (an average: buf = β buf + (1-β) g), Nesterov's look-ahead, decoupled decay, NS block by block,
    the shape scale √max(1, rows/cols) and lr, on a tall, a wide and a fused matrix, over two steps."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(12, 4), (4, 12), (10, 6)]
    params = [nn.Parameter(torch.randn(*s, generator=generator)) for s in shapes]
    grads = [[torch.randn(*s, generator=generator) for s in shapes] for _ in range(2)]
    lr, beta, wd = 0.05, 0.9, 0.1
    blocks = [None, None, (4, 3, 3)]
    muon = Muon([{"params": [p], "blocks": b} for p, b in zip(params, blocks, strict=True)],
                lr=lr, momentum=beta, nesterov=nesterov, weight_decay=wd)  # fmt: skip

    expected = [p.detach().double().clone() for p in params]
    buffers = [torch.zeros_like(w) for w in expected]
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        muon.step()
        for i, g in enumerate(step_grads):
            g = g.double()
            buffers[i] = beta * buffers[i] + (1 - beta) * g
            d = (1 - beta) * g + beta * buffers[i] if nesterov else buffers[i]
            expected[i] = expected[i] * (1 - lr * wd)
            start = 0
            for rows in blocks[i] or (shapes[i][0],):
                block = d[start : start + rows]
                scale = max(1.0, rows / shapes[i][1]) ** 0.5
                expected[i][start : start + rows] -= lr * scale * _reference_orthogonalise(block)
                start += rows
    for p, w in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach().double(), w, atol=1e-6, rtol=0)


def test_fused_qkv_is_orthogonalised_as_three_matrices():
    """Muon on c_attn with blocks (q, k, v) = Muon on three separate matrices; orthogonalising the stack instead
    would starve the block whose gradient is small (here k's, 1000x smaller) of its step."""
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(8, 8, generator=generator) * s for s in (1.0, 1e-3, 1.0))
    fused = nn.Parameter(torch.zeros(24, 8))
    apart = [nn.Parameter(torch.zeros(8, 8)) for _ in range(3)]
    whole = nn.Parameter(torch.zeros(24, 8))
    fused.grad, whole.grad = torch.cat([q, k, v]), torch.cat([q, k, v])
    for p, g in zip(apart, (q, k, v), strict=True):
        p.grad = g.clone()
    Muon([{"params": [fused], "blocks": (8, 8, 8)}], lr=0.1).step()
    Muon(apart, lr=0.1).step()
    Muon([whole], lr=0.1).step()
    torch.testing.assert_close(fused.detach(), torch.cat([p.detach() for p in apart]))
    k_step_fused, k_step_whole = fused[8:16].detach().norm(), whole[8:16].detach().norm()
    assert k_step_fused > 0.1 * math.sqrt(8) * 0.68 and k_step_whole < 0.01 * k_step_fused


def test_muon_refuses_what_it_cannot_update():
    with pytest.raises(ValueError, match="matrices only"):
        Muon([nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match="do not add up"):
        Muon([{"params": [nn.Parameter(torch.zeros(6, 2))], "blocks": (2, 2)}])
    with pytest.raises(ValueError, match="lr must be positive"):
        Muon([nn.Parameter(torch.zeros(2, 2))], lr=-1.0)


# the split and the optimizer of a run


def _gpt(**changes) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=16, **changes))


def test_hidden_matrices_of_the_gpt_are_its_block_linears():
    model = _gpt()
    hidden, rest = split_parameters(model)
    kinds = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    assert [h.name for h in hidden] == [f"transformer.h.{i}.{n}.weight" for i in range(2) for n in kinds]
    names = {id(p): n for n, p in model.named_parameters()}
    assert "transformer.wte.weight" in {names[id(p)] for p in rest}  # the embedding, also the tied head
    assert "transformer.wpe.weight" in {names[id(p)] for p in rest}
    assert all(p.dim() == 1 for p in rest if p.dim() < 2)  # LayerNorm gains and biases
    assert len(hidden) + len(rest) == len(list(model.parameters()))  # every parameter in exactly one
    assert [h.blocks for h in hidden if h.name.endswith("c_attn.weight")] == [(16, 16, 16)] * 2
    assert {h.blocks for h in hidden if not h.name.endswith("c_attn.weight")} == {None}


def test_an_untied_head_stays_with_adamw_and_gqa_splits_q_k_v_unevenly():
    model = _gpt(n_kv_head=2, pos_embedding="rope")
    model.lm_head.weight = nn.Parameter(torch.randn(11, 16))  # untie
    hidden, rest = split_parameters(model)
    assert "lm_head.weight" not in {h.name for h in hidden}
    assert any(p is model.lm_head.weight for p in rest)
    assert hidden[0].blocks == (16, 8, 8)  # 4 query heads, 2 key and 2 value heads of 4 channels


def test_the_llama_block_s_fused_gate_and_up_are_two_matrices_and_its_gains_stay_with_adamw():
    model = _gpt(arch="llama", qk_norm=True)
    hidden, rest = split_parameters(model)
    hidden_size = model.transformer.h[0].mlp.c_proj.in_features
    assert [h.blocks for h in hidden][:4] == [(16, 16, 16), None, (hidden_size, hidden_size), None]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() == 1 for p in rest if names[id(p)] not in ("transformer.wte.weight", "lm_head.weight"))
    assert {"transformer.wte.weight", "lm_head.weight"} <= {names[id(p)] for p in rest}  # untied: both AdamW's


def test_make_optimizer_pairs_muon_and_adamw_on_one_schedule():
    model = _gpt()
    config = TrainConfig(optimizer="muon", learning_rate=2e-3, min_lr=0.0, muon_lr=0.04, muon_momentum=0.9)
    optimizer = make_optimizer(model, config, CPU)
    assert isinstance(optimizer, CombinedOptimizer)
    muon, adamw = optimizer.optimizers
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    assert {id(p) for g in muon.param_groups for p in g["params"]} == {id(h.param) for h in hidden_matrices(model)}
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in muon.param_groups)
    x = torch.randint(0, 11, (2, 8))
    train_step(model, optimizer, (x, x), lr=1e-3)  # half the peak: both optimizers at half their peak
    assert [g["lr"] for g in muon.param_groups] == pytest.approx([0.02] * len(muon.param_groups))
    assert {g["lr"] for g in adamw.param_groups} == {1e-3}
    assert make_optimizer(model, TrainConfig(), CPU).__class__ is torch.optim.AdamW  # the default is unchanged


def test_muon_needs_hidden_matrices():
    with pytest.raises(ConfigError, match="found no hidden weight matrices in Embedding"):
        make_optimizer(nn.Embedding(5, 5), TrainConfig(optimizer="muon"), CPU)


def test_muon_accumulates_micro_batches_as_one_batch():
    model = _gpt()
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, 11, (200,), generator=generator)
    (x1, y1), (x2, y2) = get_batch(data, 8, 4, generator), get_batch(data, 8, 4, generator)
    config = TrainConfig(optimizer="muon")
    for _ in range(3):
        train_step(model, make_optimizer(model, config, CPU), [(x1, y1), (x2, y2)], lr=1e-3, grad_clip=1.0)
        train_step(twin, make_optimizer(twin, config, CPU), (torch.cat([x1, x2]), torch.cat([y1, y2])), lr=1e-3,
                   grad_clip=1.0)  # fmt: skip
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)


# Muon inside train: resume, CLI, bad values


@pytest.fixture
def muon_run(tiny_train_config):
    return functools.partial(
        tiny_train_config, optimizer="muon", muon_lr=0.05, lr_decay_iters=12, eval_interval=4, grad_accum_steps=2,
        dropout=0.1,
    )  # fmt: skip


def test_muon_resume_is_bit_exact(tmp_path, muon_run):
    """6 steps, a checkpoint (Muon's momentum and AdamW's moments in it), 6 more == 12 straight, bit for bit."""
    straight = train(muon_run(max_iters=12))
    out = str(tmp_path / "run")
    train(muon_run(max_iters=6, out_dir=out))
    torch.manual_seed(999)
    resumed = train(muon_run(max_iters=12, out_dir=out, resume=True))
    assert resumed.step_losses == straight.step_losses
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    adamw_straight = train(muon_run(max_iters=12, optimizer="adamw"))
    assert adamw_straight.step_losses[1:] != straight.step_losses[1:]  # Muon did take the steps


def test_resuming_with_another_optimizer_is_refused(tmp_path, muon_run):
    out = str(tmp_path / "run")
    train(muon_run(max_iters=2, out_dir=out))
    with pytest.raises(ConfigError, match="trained with optimizer=muon, not adamw"):
        train(muon_run(max_iters=4, out_dir=out, resume=True, optimizer="adamw"))


def test_cli_trains_with_muon(tmp_path, text_file, capsys):
    args = ["train", "--preset", "smoke", "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1",
            "--no-progress", "--data", text_file, "--optimizer", "muon", "--muon-lr", "0.03",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert saved["config"]["optimizer"] == "muon" and saved["config"]["muon_lr"] == 0.03
    assert len(saved["optimizer"]["optimizers"]) == 2


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--optimizer", "muon", "--muon-lr", "-0.1"], "--muon-lr must be positive and finite, got -0.1"),
        (["--muon-momentum", "1"], "--muon-momentum must be in [0, 1), got 1.0"),
        (["--optimizer", "sgd"], "argument --optimizer: invalid choice: 'sgd' (choose from 'adamw', 'muon')"),
    ],
)
def test_bad_muon_values_are_one_line(flags, expected, capsys, tmp_path):
    try:
        code = main(["train", "--preset", "smoke", *flags, "--out", str(tmp_path)])
    except SystemExit as e:  # argparse's own usage error for a value outside the choices
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1, err
