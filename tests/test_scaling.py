"""scratchlm.scaling: FLOP accounting against PyTorch's counter, the two Chinchilla fits on synthetic data with
known answers, the sweep's resumability (in process and by killing the CLI), and the `sweep` command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchlm import checkpoint as ckpt_io
from scratchlm.cli import main
from scratchlm.data import load_splits
from scratchlm.errors import ConfigError, DataError, OutputError
from scratchlm.files import folder_lock
from scratchlm.model import GPT, GPTConfig
from scratchlm.scaling import (
    CHINCHILLA,
    GRID_FILENAME,
    RESULTS_FILENAME,
    FitError,
    LossLaw,
    SweepGrid,
    append_result,
    attention_flops_per_token,
    bootstrap_isoflop_exponents,
    fit_isoflop,
    fit_isoflops,
    fit_loss_law,
    fit_parabola,
    fit_power_law,
    fit_sweep,
    flops_per_token,
    measure_training_flops,
    non_embedding_params,
    predicted_optimum,
    read_results,
    run_sweep,
    sweep_grid,
    sweep_splits,
)
from scratchlm.training import Callback

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------
# FLOPs and parameters
# ---------------------------------------------------------------------------------------------------------------

CONFIGS = [
    GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64),
    GPTConfig(vocab_size=50, block_size=32, n_layer=3, n_head=2, n_embd=48, bias=False),
    GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64, pos_embedding="rope", n_kv_head=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["learned", "no-bias", "rope-gqa"])
def test_counts_match_the_model(config):
    model = GPT(config)
    assert non_embedding_params(config) == model.num_parameters(non_embedding=True)
    assert (
        non_embedding_params(config, count_head=False) == model.num_parameters(True) - config.vocab_size * config.n_embd
    )
    assert flops_per_token(config) == model.flops_per_token()
    assert flops_per_token(config, seq_len=16) == model.flops_per_token(seq_len=16)


def test_attention_term_and_its_causal_half():
    config = CONFIGS[0]
    assert attention_flops_per_token(config) == 12 * 2 * 64 * 64
    assert attention_flops_per_token(config, masked_half=False) == 6 * 2 * 64 * 64
    assert attention_flops_per_token(config, seq_len=32) == 12 * 2 * 32 * 64


@pytest.mark.parametrize("config", CONFIGS, ids=["learned", "no-bias", "rope-gqa"])
def test_flops_per_token_agree_with_the_profiler(config):
    """6N + 12·L·T·C against FlopCounterMode on a real forward and backward pass: the attention products exactly,
    the whole within 3% (6N counts biases and LayerNorm gains as if they were matmul weights)."""
    torch.manual_seed(0)
    model = GPT(config)
    B, T = 3, config.block_size
    x = torch.randint(0, config.vocab_size, (B, T))
    y = torch.randint(0, config.vocab_size, (B, T))
    counts = measure_training_flops(model, x, y)
    assert counts["bmm"] == attention_flops_per_token(config) * B * T  # the whole T×T matrix, masked half included
    measured = counts["total"] / (B * T)
    assert measured == pytest.approx(flops_per_token(config), rel=0.03)
    assert measured < flops_per_token(config)  # what 6N over-counts is small, and only over-counts
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------------------------------------------


def isoflop_design(law: LossLaw, budgets, sizes_per_budget=7, spread=0.6):
    """Runs spread evenly in log N around the law's optimum at each budget, D = C / 6N: a synthetic sweep."""
    budgets_, sizes, tokens = [], [], []
    for c in budgets:
        n_opt, _ = law.compute_optimal(c)
        for factor in np.logspace(-spread, spread, sizes_per_budget):
            budgets_.append(c)
            sizes.append(n_opt * factor)
            tokens.append(c / (6 * n_opt * factor))
    return np.array(budgets_), np.array(sizes), np.array(tokens)


def noisy(losses, sigma, seed=0):
    return losses * np.exp(np.random.default_rng(seed).normal(0.0, sigma, len(losses)))


def test_bootstrap_intervals_cover_the_true_exponents_and_widen_with_noise():
    budgets, sizes, tokens = isoflop_design(CHINCHILLA, np.logspace(18, 21, 4))
    losses = noisy(CHINCHILLA(sizes, tokens), sigma=0.002)
    a_runs, b_runs = bootstrap_isoflop_exponents(budgets, sizes, tokens, losses, resamples=300)
    fit = fit_isoflops(budgets, sizes, tokens, losses)
    assert a_runs.estimate == fit.n_opt.exponent and b_runs.estimate == fit.d_opt.exponent
    assert a_runs.low < a_runs.estimate < a_runs.high
    assert CHINCHILLA.a in a_runs and CHINCHILLA.b in b_runs
    assert a_runs.resamples + a_runs.failed == 300
    small, _ = bootstrap_isoflop_exponents(budgets, sizes, tokens, losses, noise_sd=0.001, resamples=300)
    large, _ = bootstrap_isoflop_exponents(budgets, sizes, tokens, losses, noise_sd=0.01, resamples=300)
    assert 0 < small.high - small.low < large.high - large.low
    exact, _ = bootstrap_isoflop_exponents(budgets, sizes, tokens, losses, noise_sd=0.0, resamples=20)
    assert exact.low == pytest.approx(exact.estimate) and exact.high == pytest.approx(exact.estimate)
    with pytest.raises(FitError, match="valid"):
        bootstrap_isoflop_exponents([1e12] * 4, [1e4, 2e4, 4e4, 8e4], [1e6, 5e5, 2.5e5, 1.25e5], [2, 2.1, 2.3, 2.6])


def test_isoflop_residuals_are_the_runs_minus_the_parabola():
    sizes, tokens, losses = [1e4, 2e4, 4e4, 8e4], [8e6, 4e6, 2e6, 1e6], [2.3, 2.1, 2.15, 2.2]
    profile = fit_isoflop(1e12, sizes, tokens, losses)
    np.testing.assert_allclose(profile.residuals, np.array(losses) - profile.n_curve(np.array(sizes)))
    assert abs(profile.residuals.sum()) < 1e-9  # least squares with a constant term: the residuals sum to zero


def test_power_law_and_parabola_recover_exact_values():
    x = np.geomspace(1e10, 1e14, 5)
    law = fit_power_law(x, 3.0 * x**0.42)
    assert law.exponent == pytest.approx(0.42) and law.coefficient == pytest.approx(3.0)
    n = np.geomspace(1e4, 1e6, 6)
    curve = fit_parabola(n, 0.1 * (np.log(n) - np.log(7e4)) ** 2 + 2.5)
    assert curve.argmin == pytest.approx(7e4) and curve.minimum == pytest.approx(2.5)
    with pytest.raises(FitError):
        fit_parabola([1e4, 2e4], [3.0, 2.9])
    with pytest.raises(FitError):
        fit_power_law([1.0, -2.0], [1.0, 2.0])


def test_isoflop_profile_without_an_inside_minimum_is_not_valid():
    rising = fit_isoflop(1e12, [1e4, 2e4, 4e4, 8e4], [1e6, 5e5, 2.5e5, 1.25e5], [2.0, 2.1, 2.3, 2.6])
    assert not rising.valid
    fit = fit_isoflops([1e12] * 4, rising.sizes, rising.tokens, rising.losses)
    assert fit.n_opt is None and fit.valid_profiles == ()


def test_approach_2_recovers_the_exponents_from_noisy_isoflop_profiles():
    """Chinchilla's published law as the truth: N* ∝ C^(β/(α+β)) = C^0.452, D* ∝ C^0.548."""
    budgets, sizes, tokens = isoflop_design(CHINCHILLA, np.logspace(18, 21, 4))
    fit = fit_isoflops(budgets, sizes, tokens, noisy(CHINCHILLA(sizes, tokens), sigma=0.002))
    assert len(fit.valid_profiles) == 4
    assert fit.n_opt.exponent == pytest.approx(CHINCHILLA.a, rel=0.05)
    assert fit.d_opt.exponent == pytest.approx(CHINCHILLA.b, rel=0.05)
    for budget in np.unique(budgets):  # the power laws average the noise of the single minima out
        n_true, d_true = CHINCHILLA.compute_optimal(budget)
        assert fit.n_opt(budget) == pytest.approx(n_true, rel=0.05)
        assert fit.d_opt(budget) == pytest.approx(d_true, rel=0.05)


def test_approach_2_minima_are_nearly_exact_without_noise():
    """A parabola in log N is only the valley's second-order approximation: with runs ±0.6 decades around the
    optimum of a law with α ≠ β its minimum is 1.5% off, the same at every budget, so the exponents stay exact.
    D* is what the budget buys N*: C / 6N* here."""
    budgets, sizes, tokens = isoflop_design(CHINCHILLA, np.logspace(18, 21, 4))
    fit = fit_isoflops(budgets, sizes, tokens, CHINCHILLA(sizes, tokens))
    for profile in fit.profiles:
        n_true, d_true = CHINCHILLA.compute_optimal(profile.budget)
        assert profile.n_opt == pytest.approx(n_true, rel=0.02)
        assert profile.d_opt == pytest.approx(d_true, rel=0.02)
        assert profile.d_opt == pytest.approx(profile.budget / (6 * profile.n_opt), rel=1e-9)
    assert fit.n_opt.exponent == pytest.approx(CHINCHILLA.a, rel=1e-6)


def test_approach_3_recovers_the_law_exactly_without_noise():
    _, sizes, tokens = isoflop_design(CHINCHILLA, np.logspace(18, 21, 4))
    law = fit_loss_law(sizes, tokens, CHINCHILLA(sizes, tokens)).law
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(law, name) == pytest.approx(getattr(CHINCHILLA, name), rel=1e-3), name


def test_approach_3_recovers_the_law_from_noisy_runs():
    """With 0.2% noise on the losses, E, α, β (and a, b) come back within 5%. A and B do not, and cannot: they
    are exp(intercepts) far from the data (ln N ≈ 20), so an error of 0.01 in α moves A by 20%. What the data do
    pin down is each term's size where the runs are, A/N^α and B/D^β at their geometric means: within 5%."""
    _, sizes, tokens = isoflop_design(CHINCHILLA, np.logspace(18, 21, 4))
    fit = fit_loss_law(sizes, tokens, noisy(CHINCHILLA(sizes, tokens), sigma=0.002))
    law = fit.law
    for name in ("E", "alpha", "beta", "a", "b"):
        assert getattr(law, name) == pytest.approx(getattr(CHINCHILLA, name), rel=0.05), name
    n_mid, d_mid = np.exp(np.log(sizes).mean()), np.exp(np.log(tokens).mean())
    assert law.A / n_mid**law.alpha == pytest.approx(CHINCHILLA.A / n_mid**CHINCHILLA.alpha, rel=0.05)
    assert law.B / d_mid**law.beta == pytest.approx(CHINCHILLA.B / d_mid**CHINCHILLA.beta, rel=0.05)


def test_loss_law_fit_needs_five_positive_runs():
    with pytest.raises(FitError):
        fit_loss_law([1e4, 2e4, 3e4, 4e4], [1e6] * 4, [2.0] * 4)
    with pytest.raises(FitError):
        fit_loss_law([1e4, 2e4, 3e4, 4e4, 5e4], [1e6] * 5, [2.0, 2.0, 0.0, 2.0, 2.0])


def test_compute_optimal_closed_form_minimises_the_law_on_its_budget():
    c = 5.76e23  # Gopher's and Chinchilla's budget
    n_opt, d_opt = CHINCHILLA.compute_optimal(c)
    assert 6 * n_opt * d_opt == pytest.approx(c)
    n = np.geomspace(n_opt / 10, n_opt * 10, 2001)
    assert n[np.argmin(CHINCHILLA(n, c / (6 * n)))] == pytest.approx(n_opt, rel=0.01)


# ---------------------------------------------------------------------------------------------------------------
# The grid and the sweep
# ---------------------------------------------------------------------------------------------------------------


def test_grid_points_spend_their_budget_on_their_own_schedule():
    grid = sweep_grid("cpu", max_epochs=None)
    points = grid.points(vocab_size=65)
    assert len({p.key for p in points}) == len(points)
    small_budget = grid.replace(budgets=(1e10, *grid.budgets))  # too small for the widest models
    everything = [small_budget.point(w, c, 65) for w in grid.widths for c in small_budget.budgets]
    kept = small_budget.points(vocab_size=65)
    assert {p.key for p in kept} == {p.key for p in everything if p.steps >= grid.min_steps}
    assert len(kept) < len(everything)
    for p in points:
        assert p.model.n_layer == grid.depth and p.model.n_embd == p.width
        assert p.model.n_head * grid.head_size == p.width
        step_flops = p.flops_per_token * grid.tokens_per_step
        assert abs(p.flops - p.budget) <= step_flops / 2  # whole steps, the nearest to the budget
        assert p.config.max_iters == p.steps and p.config.lr_decay_iters is None  # the cosine ends at its last step
        assert p.config.warmup_iters == round(grid.warmup_fraction * p.steps)
        assert p.config.learning_rate == pytest.approx(
            grid.learning_rate * (grid.lr_width / p.width) ** grid.lr_exponent
        )
        assert p.config.min_lr == pytest.approx(p.config.learning_rate * grid.min_lr_fraction)


def test_grid_errors_are_config_errors():
    with pytest.raises(ConfigError, match="unknown grid"):
        sweep_grid("laptop")
    with pytest.raises(ConfigError, match="multiples of head_size"):
        sweep_grid("cpu", widths=(16, 40))
    with pytest.raises(ConfigError, match="budgets"):
        sweep_grid("cpu", budgets=())


@pytest.fixture
def tiny_grid(text_file) -> SweepGrid:
    return SweepGrid(
        widths=(16, 32),
        budgets=(3e8, 6e8),
        depth=1,
        block_size=16,
        batch_size=4,
        evals=3,
        eval_iters=2,
        final_eval_iters=3,
        data=text_file,
    )


class CrashAt(Callback):
    """Raise (as a crash would end the process) at step `step` of the run of `key`."""

    def __init__(self, key: str, step: int):
        self.key, self.step = key, step

    def on_step(self, run, result):
        if Path(run.out_dir).name == self.key and run.step == self.step:
            raise RuntimeError("simulated crash")


def test_grid_leaves_out_points_that_repeat_the_data_more_than_max_epochs():
    """The bug: the gpu grid read Tiny Shakespeare 81-3,315 times at 1e16 FLOPs, measuring memorisation."""
    train_tokens = 1_003_854  # Tiny Shakespeare's training split, in characters
    uncapped = sweep_grid("cpu", max_epochs=None).points(65)
    capped = sweep_grid("cpu").points(65, train_tokens)
    assert {p.key for p in uncapped} - {p.key for p in capped} == {"L3-w16-C2e+12"}  # 19.5 epochs
    assert all(p.tokens <= 10 * train_tokens for p in capped)
    with pytest.raises(ConfigError, match="train_tokens"):
        sweep_grid("cpu").points(65)
    gpu = sweep_grid("gpu")
    stdlib_train = 11_939_158  # characters of CPython 3.11's standard library, prepare's training split
    points = gpu.points(222, stdlib_train)
    assert points and all(p.tokens <= 4 * stdlib_train for p in points)
    for budget in gpu.budgets:  # every profile keeps enough sizes for a parabola
        assert len({p.width for p in points if p.budget == budget}) >= 3


def test_grid_seeds_are_separate_points_with_their_own_keys():
    grid = sweep_grid("smoke", seeds=3)
    points = grid.points(65)
    one_seed = sweep_grid("smoke").points(65)
    assert len(points) == 3 * len(one_seed)
    assert {p.seed for p in points} == {grid.seed, grid.seed + 1, grid.seed + 2}
    assert {p.key for p in points if p.seed == grid.seed} == {p.key for p in one_seed}  # old results still match
    assert all(p.key.endswith(f"-s{p.seed}") for p in points if p.seed != grid.seed)
    assert len({p.key for p in points}) == len(points)
    assert all(p.config.seed == p.seed for p in points)


def test_sweep_splits_reads_text_and_prepared_shards(tmp_path):
    from scratchlm.pretraining.shards import prepare

    path = tmp_path / "paragraphs.txt"
    path.write_text("\n\n".join(f"Paragraph {i}: to be, or not to be." for i in range(300)), encoding="utf-8")
    text = sweep_splits(str(path))
    assert len(text.train) + len(text.val) == len(path.read_text())
    prepare(str(path), "char", tmp_path / "shards", workers=1, progress=False)
    shards = sweep_splits(tmp_path / "shards")
    assert shards.train.dtype == torch.long and len(shards.train) > 0 and len(shards.val) > 0
    assert shards.tokenizer.decode(shards.train[2:20].tolist()) in path.read_text()  # after the "\\n\\n" separator
    documents = tmp_path / "documents"  # a corpus for prepare, not a text file: prepared into the sweep's folder
    documents.mkdir()
    for i in range(3):
        (documents / f"{i}.txt").write_text(f"document {i}\n" * 40, encoding="utf-8")
    prepared = sweep_splits(documents, tmp_path / "sweep")
    assert (tmp_path / "sweep" / "data" / "index.json").is_file()
    assert len(prepared.train) + len(prepared.val) > 3 * 40 * len("document 0\n")


class Steps(Callback):
    """Which points took steps, and from which step they started."""

    def __init__(self):
        self.first_step: dict[str, int] = {}

    def on_step(self, run, result):
        self.first_step.setdefault(Path(run.out_dir).name, run.step)


def test_sweep_skips_finished_points_and_resumes_an_interrupted_one_exactly(tiny_grid, tmp_path):
    points = tiny_grid.points(vocab_size=load_splits(tiny_grid.data).tokenizer.vocab_size)
    crashed = points[2]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_sweep(tiny_grid, tmp_path / "a", callbacks=[CrashAt(crashed.key, crashed.steps - 2)], progress=False)
    before = (tmp_path / "a" / RESULTS_FILENAME).read_text().splitlines()
    assert [json.loads(line)["key"] for line in before] == [p.key for p in points[:2]]
    assert (tmp_path / "a" / "points" / crashed.key / "ckpt.pt").is_file()

    steps = Steps()
    records = run_sweep(tiny_grid, tmp_path / "a", callbacks=[steps], progress=False)
    after = (tmp_path / "a" / RESULTS_FILENAME).read_text().splitlines()
    assert after[:2] == before  # finished points were neither rerun nor rewritten
    assert [r["key"] for r in records] == [p.key for p in points]
    assert set(steps.first_step) == {p.key for p in points[2:]}
    last_checkpoint = 2 * crashed.config.eval_interval  # the crash came after the run's third evaluation
    assert steps.first_step[crashed.key] == last_checkpoint + 1
    assert records[2]["resumed_from_step"] == last_checkpoint
    assert not any((tmp_path / "a" / "points" / p.key / "ckpt.pt").exists() for p in points)

    # the interrupted point ends exactly where an uninterrupted sweep ends
    uninterrupted = run_sweep(tiny_grid, tmp_path / "b", progress=False)
    assert [r["final_val_loss"] for r in records] == [r["final_val_loss"] for r in uninterrupted]
    assert uninterrupted[2]["resumed_from_step"] is None

    # once done, a rerun trains nothing
    steps = Steps()
    assert run_sweep(tiny_grid, tmp_path / "a", callbacks=[steps], progress=False) == records
    assert steps.first_step == {}


def test_a_diverging_point_is_recorded_as_diverged_and_left_out_of_the_fits(tiny_grid, tmp_path, capsys):
    grid = tiny_grid.replace(budgets=(3e8,), learning_rate=1e6, min_lr_fraction=0.0, warmup_fraction=0.0)
    records = run_sweep(grid, tmp_path, progress=False)
    assert all(r["diverged"] and r["final_val_loss"] is None for r in records)
    assert read_results(tmp_path) == records  # finished: a rerun does not try again
    with pytest.raises(ConfigError, match="no finished runs"):
        fit_sweep(records)
    assert main(["sweep", "--report", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_finished_points_of_other_settings_are_refused(tiny_grid, tmp_path):
    run_sweep(tiny_grid.replace(budgets=(3e8,)), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep(tiny_grid.replace(budgets=(3e8,), learning_rate=3e-3), tmp_path, progress=False)


def test_a_refused_sweep_writes_nothing_not_even_grid_json(tiny_grid, tmp_path):
    """Regression (issue 22, item 3): a sweep refused for other settings rewrote grid.json before refusing."""
    run_sweep(tiny_grid.replace(budgets=(3e8,)), tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep(tiny_grid.replace(budgets=(3e8,), learning_rate=3e-3), tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_sweep_folder_in_use_is_refused_before_anything_is_written(tiny_grid, tmp_path):
    with folder_lock(tmp_path), pytest.raises(OutputError, match="in use by another"):  # another sweep holds it
        run_sweep(tiny_grid.replace(budgets=(3e8,)), tmp_path, progress=False)
    assert not (tmp_path / GRID_FILENAME).exists() and not (tmp_path / RESULTS_FILENAME).exists()


def test_a_sweep_extends_with_new_points_of_its_recipe_but_not_with_another_recipe(tiny_grid, tmp_path):
    run_sweep(tiny_grid.replace(budgets=(3e8,), widths=(16,)), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"other settings \(learning_rate\).*mix two recipes"):
        run_sweep(tiny_grid.replace(budgets=(6e8,), widths=(16,), learning_rate=3e-3), tmp_path, progress=False)
    records = run_sweep(tiny_grid.replace(budgets=(6e8,), widths=(16,)), tmp_path, progress=False)
    assert len(records) == 1 and len(read_results(tmp_path)) == 2
    grid = json.loads((tmp_path / GRID_FILENAME).read_text())
    assert grid["budgets"] == [3e8, 6e8] and grid["widths"] == [16]  # grid.json describes both points


def test_a_grid_that_leaves_no_point_or_cannot_fit_is_refused_before_training(tiny_grid, tmp_path):
    with pytest.raises(ConfigError, match=r"no \(width, budget\) point.*min_steps=100000"):
        run_sweep(tiny_grid.replace(min_steps=100_000), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="the sweep's largest model needs at least"):
        run_sweep(tiny_grid.replace(widths=(16 * 2**16,), min_steps=0), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="the sweep's largest model needs at least"):  # at once, no model built
        run_sweep(tiny_grid.replace(depth=10**7), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"add up to 1e\+30 training FLOPs.*lower --budgets"):
        run_sweep(tiny_grid.replace(budgets=(1e30,), widths=(16,)), tmp_path, progress=False)
    assert not (tmp_path / GRID_FILENAME).exists()


def _record(key: str) -> dict:
    """The fields a sweep record must have, with made-up values."""
    return {"key": key, "config": {}, "budget": 1e9, "params": 10, "tokens": 100, "flops": 1e9, "epochs": 0.1,
            "wall_s": 1.0, "final_val_loss": 2.0}  # fmt: skip


def test_a_line_cut_short_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    (tmp_path / RESULTS_FILENAME).write_text(json.dumps(_record("a")) + '\n{"key": "b", "x"')
    assert [r["key"] for r in read_results(tmp_path)] == ["a"]
    append_result(tmp_path, _record("c"))
    assert [r["key"] for r in read_results(tmp_path)] == ["a", "c"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"\xff\xfe not text", "line 2 is not UTF-8 text"),
        (b"hello, world", "line 2 is not a JSON record"),
        (b"[1, 2, 3]", "line 2 is not a sweep record (it is not a JSON object)"),
        (b'{"key": "x", "params": "many"}', "line 2 is not a sweep record"),
    ],
)
def test_a_damaged_or_foreign_results_file_is_one_line_on_resume_and_report(line, message, text_file, tmp_path, capsys):
    (tmp_path / RESULTS_FILENAME).write_bytes(json.dumps(_record("a")).encode() + b"\n" + line + b"\n")
    with pytest.raises(DataError, match=re.escape(message)):
        read_results(tmp_path)
    assert main(["sweep", "--report", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert main(["sweep", "--grid", "smoke", "--data", text_file, "--out", str(tmp_path)]) == 2  # before training
    assert message in capsys.readouterr().err


def test_predicted_optimum_is_the_best_width_of_the_shape_rule():
    grid = sweep_grid("cpu")
    ranked = predicted_optimum(CHINCHILLA, grid, 1e12, vocab_size=65)
    losses = [loss for _, loss in ranked]
    assert losses == sorted(losses)
    best, loss = ranked[0]
    assert loss == pytest.approx(CHINCHILLA(best.params, best.tokens))
    assert {p.width for p, _ in ranked} == set(range(grid.head_size, 2 * max(grid.widths) + 1, grid.head_size))


def test_fit_sweep_selects_budgets():
    records = [
        {"budget": c, "params": n, "tokens": d, "final_val_loss": float(CHINCHILLA(n, d))}
        for c, n, d in zip(*isoflop_design(CHINCHILLA, [1e18, 1e19, 1e20], 5), strict=True)
    ]
    held_out = fit_sweep(records, budgets=[1e18, 1e19])
    assert [p.budget for p in held_out.isoflops.profiles] == [1e18, 1e19]
    assert held_out.loss_law.law.alpha == pytest.approx(CHINCHILLA.alpha, rel=1e-2)


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------


def write_synthetic_sweep(folder: Path, law: LossLaw = CHINCHILLA) -> None:
    budgets, sizes, tokens = isoflop_design(law, np.logspace(18, 20, 3), sizes_per_budget=5)
    for i, (c, n, d) in enumerate(zip(budgets, sizes, tokens, strict=True)):
        loss = float(law(n, d))
        append_result(
            folder,
            {
                "key": f"run{i}",
                "width": int(n),
                "budget": c,
                "params": int(n),
                "tokens": int(d),
                "flops": c,
                "flops_per_token": 6 * n,
                "epochs": 0.5,
                "final_val_loss": loss,
                "wall_s": 1.0,
                "curve": [{"step": 10, "tokens": int(d), "val_loss": loss, "train_loss": loss}],
            },
        )


def test_cli_report_prints_the_fitted_constants_and_writes_the_plots(tmp_path, capsys):
    write_synthetic_sweep(tmp_path)
    assert main(["sweep", "--report", str(tmp_path), "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert f"C^{CHINCHILLA.a:.3f}" in out and f"C^{CHINCHILLA.b:.3f}" in out  # approach 2 on exact data
    ours = next(line for line in out.splitlines() if "this sweep" in line)
    assert f"alpha={CHINCHILLA.alpha:.3f}" in ours and f"beta={CHINCHILLA.beta:.3f}" in ours
    for name in ("loss_vs_flops.png", "isoflops.png", "optimal_scaling.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--grid", "laptop"], "unknown grid"),
        (["--grid", "smoke", "--widths", "20"], "multiples of --head-size"),
        (["--grid", "smoke", "--budgets", "-1"], "positive number of FLOPs"),
        (["--report", "EMPTY"], "no finished runs"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    argv = [str(tmp_path) if a == "EMPTY" else a for a in argv]
    if "--report" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    try:
        code = main(["sweep", *argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_sweep_killed_mid_run_resumes_where_it_stopped(text_file, tmp_path):
    """The real thing: SIGKILL the command while a point is training, run the command again, and every point is
    there once, the killed one continued from the checkpoint it had on disk.

    The regression (it failed now and then on a loaded machine): the test chose the point to expect on seeing its
    second metrics line and killed it a poll later. That line is the evaluation at the point's first step past 0,
    appended just *before* that step's checkpoint is saved, and a point of this size trains on for only about
    0.1 s after it: a kill landing before the save left the step-0 checkpoint (resumed from 0, not > 0), and a
    poll delayed by the load let the point finish before the kill arrived. Now a third line is awaited (each
    save precedes the next evaluation's line, so a checkpoint past step 0 is complete on disk), the command is
    stopped (SIGSTOP) before the point is checked to be still unfinished, and the point's checkpoint, read while
    the command cannot move, gives the step the rerun must continue from."""
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "scratchlm", "sweep", "--grid", "smoke", "--data", text_file, "--out", str(out)]
    argv += ["--widths", "16", "32", "--budgets", "4e8", "8e8", "--depth", "1", "--block-size", "16"]
    argv += ["--batch-size", "4", "--evals", "8", "--final-eval-iters", "2"]
    env = {**os.environ, "SCRATCHLM_THREADS": "1"}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_key = saved_step = None
    try:
        deadline = time.monotonic() + 60
        while killed_key is None and time.monotonic() < deadline and proc.poll() is None:
            done = {r["key"] for r in read_results(out)}
            training = [m.parent for m in (out / "points").glob("*/metrics.jsonl") if done and
                        m.parent.name not in done and len(m.read_text().splitlines()) >= 3]  # fmt: skip
            if training:
                proc.send_signal(signal.SIGSTOP)
                os.waitpid(proc.pid, os.WUNTRACED)  # stopped: what is on disk now is what the kill leaves
                if training[0].name not in {r["key"] for r in read_results(out)}:
                    killed_key, saved_step = training[0].name, ckpt_io.load(training[0] / ckpt_io.FILENAME).step
                    break
                proc.send_signal(signal.SIGCONT)  # it finished meanwhile: wait for the next point
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert killed_key is not None, "the sweep ended before it could be killed mid-point"
    before = (out / RESULTS_FILENAME).read_text().splitlines()
    assert killed_key not in {json.loads(line)["key"] for line in before} and saved_step > 0

    rerun = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    records = read_results(out)
    assert len(records) == 4 and len({r["key"] for r in records}) == 4
    assert (out / RESULTS_FILENAME).read_text().splitlines()[: len(before)] == before
    killed = next(r for r in records if r["key"] == killed_key)
    assert killed["resumed_from_step"] == saved_step
