"""The ladder: every rung builds and learns on the smoke budget, the budget is the same for all, a seed
reproduces its result, the results file round-trips, the table and plot work headless, and bad names fail
clearly."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

import scratchlm.cli.ladder as cli_ladder
import scratchlm.ladder.run as ladder_run
import scratchlm.training.loop as training_loop
from scratchlm.cli import main
from scratchlm.errors import ConfigError, DataError
from scratchlm.ladder import (
    RESULTS_PATH,
    RUNGS,
    LadderBudget,
    budget,
    get_rung,
    ladder_data,
    ladder_table,
    plot_ladder,
    read_ladder,
    run_ladder,
    run_rung,
    show_ladder,
    write_ladder,
)

# The module's first test trains every rung on the smoke budget (the `smoke_ladder` fixture, 19 rungs): about
# two minutes on a free core, more on a shared one, past pytest-timeout's 300 s default for one test.
pytestmark = pytest.mark.timeout(900)

SMOKE = budget("smoke")
CHAR_RUNGS = [name for name in RUNGS if get_rung(name).tokenizer == "char"]


@pytest.fixture(scope="module")
def smoke_ladder() -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Every rung once on the smoke budget (seed 0), with the evaluation calls each made to the training loop."""
    results, eval_calls = {}, {}
    original = training_loop.estimate_loss

    def spy(model, splits, **kwargs):
        recorded = {k: v for k, v in kwargs.items() if k != "autocast"}  # a fresh context object per run
        eval_calls[current].append(recorded | {"val_head": splits["val"][:8].tolist()})
        return original(model, splits, **kwargs)

    training_loop.estimate_loss = spy
    try:
        for current in RUNGS:
            eval_calls[current] = []
            results[current] = run_rung(current, 0, SMOKE, progress=False, device="cpu")
    finally:
        training_loop.estimate_loss = original
    return results, eval_calls


@pytest.mark.parametrize("name", RUNGS)
def test_every_rung_learns_something_in_smoke_mode(smoke_ladder, name):
    result = smoke_ladder[0][name]
    data = ladder_data(SMOKE, get_rung(name).tokenizer)
    # a uniform guess over the vocabulary: log2(V) bits per scored token, spread over the bytes they spell
    scored = data.heldout[1:]
    uniform = math.log2(result["vocab_size"]) * len(scored) / data.n_bytes[scored].sum().item()
    assert math.isfinite(result["bits_per_byte"])
    assert 0 < result["bits_per_byte"] < uniform
    assert result["val_loss"] < math.log(result["vocab_size"])
    assert result["rung"] == name and result["seed"] == 0 and result["budget"] == "smoke"
    assert result["params"] > 0 and result["seconds"] > 0


def test_every_rung_gets_the_same_budget(smoke_ladder):
    results, eval_calls = smoke_ladder
    assert len({json.dumps(r["budget_config"], sort_keys=True) for r in results.values()}) == 1
    assert {r["steps"] for r in results.values()} == {SMOKE.max_iters}
    assert {r["heldout_bytes"] for r in results.values()} == {SMOKE.heldout_chars}  # the same held-out text
    for name in CHAR_RUNGS:  # characters: the same tokens (= bytes), the same evaluation batches
        assert results[name]["tokens"] == results[name]["train_bytes"] == SMOKE.train_tokens
        assert eval_calls[name] == eval_calls["gpt"]
    # BPE: the same steps and sequences, a context of the same bytes, so (nearly) the same training bytes
    bpe = results["gpt-bpe"]
    assert bpe["block_size"] < SMOKE.block_size
    assert abs(bpe["train_bytes"] / SMOKE.train_tokens - 1) < 0.05
    bpe_calls = eval_calls["gpt-bpe"]
    assert len(bpe_calls) == len(eval_calls["gpt"]) == 2  # at the start and at the end
    for ours, chars in zip(bpe_calls, eval_calls["gpt"], strict=True):
        assert {k: ours[k] for k in ("batch_size", "eval_iters", "seed")} == {
            k: chars[k] for k in ("batch_size", "eval_iters", "seed")
        }


def test_tiled_attention_is_the_gpt_with_another_kernel(smoke_ladder):
    results = smoke_ladder[0]
    assert results["tiled-attention"]["params"] == results["gpt"]["params"]
    assert results["tiled-attention"]["bits_per_byte"] == pytest.approx(results["gpt"]["bits_per_byte"], abs=1e-3)


def test_same_seed_same_result_and_another_seed_differs(smoke_ladder):
    first = smoke_ladder[0]["one-head"]
    again = run_rung("one-head", 0, SMOKE, progress=False, device="cpu")
    other = run_rung("one-head", 1, SMOKE, progress=False, device="cpu")
    for key in ("bits_per_byte", "val_loss", "train_loss", "heldout_nats_per_token"):
        assert again[key] == first[key]
    assert other["bits_per_byte"] != first["bits_per_byte"]


def test_run_ladder_runs_every_rung_and_seed_in_order():
    tiny = SMOKE.replace(max_iters=3, heldout_chars=500)
    seen = []
    results = run_ladder(seeds=(0, 1), rungs=("bigram", "one-head"), budget=tiny, device="cpu", on_result=seen.append)
    assert [(r["rung"], r["seed"]) for r in results] == [("bigram", 0), ("bigram", 1), ("one-head", 0), ("one-head", 1)]
    assert seen == results and {r["budget"] for r in results} == {"custom"}


def test_unknown_rung_and_bad_budget_are_clear_errors():
    with pytest.raises(ConfigError, match=r"unknown rung 'transformer'.*bigram, one-head"):
        run_rung("transformer", 0, SMOKE)
    with pytest.raises(ConfigError, match="unknown rung 'nope'"):
        run_ladder(seeds=(0,), rungs=("bigram", "nope"), budget=SMOKE)  # before training anything
    with pytest.raises(ConfigError, match="unknown ladder budget 'huge'"):
        budget("huge")
    with pytest.raises(ConfigError, match="n_kv_head=4 must divide n_head=4 and be smaller"):
        LadderBudget(n_kv_head=4)
    with pytest.raises(ConfigError, match="max_iters must be a positive integer"):
        SMOKE.replace(max_iters=0)
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        run_rung("bigram", -1, SMOKE)


def test_results_file_round_trips(smoke_ladder, tmp_path):
    results = list(smoke_ladder[0].values())
    path = write_ladder(results, tmp_path / "sub" / "ladder.json")
    assert read_ladder(path) == results


def test_missing_or_broken_results_file_says_what_to_run(tmp_path):
    with pytest.raises(DataError, match="python -m scratchlm ladder"):
        read_ladder(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": 3}')
    with pytest.raises(DataError, match=r"not a ladder results file.*python -m scratchlm ladder"):
        read_ladder(broken)


def _fake(rung: str, seed: int, bpb: float, budget_name: str = "cpu") -> dict:
    return {
        "rung": rung,
        "lesson": get_rung(rung).lesson,
        "seed": seed,
        "bits_per_byte": bpb,
        "val_loss": bpb * 0.69,
        "params": 1000,
        "seconds": 1.0,
        "heldout_bytes": 100,
        "budget": budget_name,
        "budget_config": SMOKE.to_dict(),
        "device": "cpu",
        "threads": 1,
    }


def test_table_shows_mean_and_half_range_marks_highlights_and_measured():
    results = [_fake("bigram", 0, 3.5), _fake("bigram", 1, 3.7), _fake("gpt", 0, 2.5), _fake("gpt", 1, 2.6)]
    table = ladder_table(results, highlight=["gpt"], measured=[_fake("gpt", 0, 2.55)])
    rows = {line.split()[1] if line.startswith("▶") else line.split()[0]: line for line in table.splitlines()[3:]}
    assert "3.600 ± 0.100" in rows["bigram"] and not rows["bigram"].startswith("▶")
    assert rows["gpt"].startswith("▶") and "2.550 ± 0.050" in rows["gpt"] and rows["gpt"].rstrip().endswith("2.550")
    assert table.index("bigram") < table.index("gpt")  # ladder order
    other_budget = ladder_table(results, measured=[_fake("gpt", 0, 4.0, "smoke")])
    assert "(smoke)" in other_budget and "not comparable" in other_budget
    with pytest.raises(ConfigError, match="unknown rung"):
        ladder_table(results, highlight=["nope"])


@pytest.mark.filterwarnings("ignore:.*non-interactive:UserWarning")  # plt.show() under Agg
def test_plot_and_show_run_headless(smoke_ladder, tmp_path, capsys):
    results = list(smoke_ladder[0].values())
    ax = plot_ladder(results, highlight=["gpt"], measured=[results[0]])
    values = [r["bits_per_byte"] for r in results]
    assert ax.get_xlim()[0] < min(values) and ax.get_xlim()[1] > max(values)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    assert len(ax.get_yticklabels()) == len(RUNGS)
    plt.close("all")
    show_ladder(highlight=["gpt"], measured=[results[0]], results=results)
    out = capsys.readouterr().out
    assert "▶ gpt" in out and "measured now" in out
    # no committed file: the measured results alone, with the command that makes the file
    show_ladder(measured=[results[0]], path=tmp_path / "absent.json")
    assert "python -m scratchlm ladder" in capsys.readouterr().out
    with pytest.raises(DataError, match="python -m scratchlm ladder"):
        show_ladder(path=tmp_path / "absent.json")
    plt.close("all")


def test_ladder_plot_labels_and_legend_cover_no_marker():
    """The bug: each row's value label sat where the "measured now" cross was drawn, and the legend, inside the
    axes, covered the bottom rung (lesson 09's own). Labels now sit in a column right of the axes, the legend
    below them, and the plot keeps to the rungs up to the lesson shown."""
    results = [_fake(name, seed, 3.0 - 0.1 * i + 0.01 * seed) for i, name in enumerate(RUNGS) for seed in (0, 1)]
    results.append(_fake("modern", 2, 2.0))  # a third seed, of a later lesson's rung: not in this plot's count
    ax = plot_ladder(results, highlight=["gqa"], measured=[_fake("gqa", 0, 2.2)], up_to_lesson="09")
    assert "2 seeds" in ax.get_title()
    labels = [t for t in ax.texts if t.get_text()]
    assert len(labels) == len([n for n in RUNGS if get_rung(n).lesson <= "09"])
    assert all(t.xycoords[0] == "axes fraction" and t.xy[0] > 1 for t in labels)  # right of the axes
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().y0 < ax.get_window_extent().y0  # below the axes
    assert "now 2.200" in labels[-1].get_text() and "±" in labels[-1].get_text()
    plt.close("all")
    tie = [_fake("bigram", s, 3.0 + 0.02 * s) for s in (0, 1)] + [_fake("one-head", s, 3.01 + 0.02 * s) for s in (0, 1)]
    ax = plot_ladder(tie)
    assert "≈ above" in ax.texts[1].get_text() and "≈" not in ax.texts[0].get_text()
    plt.close("all")


def test_cli_runs_a_smoke_ladder_and_prints_its_table(tmp_path, capsys):
    out = tmp_path / "ladder.json"
    argv = ["ladder", "--budget", "smoke", "--seeds", "0", "--rungs", "bigram", "--max-iters", "3", "--out", str(out)]
    assert main([*argv, "--plot", str(tmp_path / "ladder.png")]) == 0
    assert [r["rung"] for r in read_ladder(out)] == ["bigram"] and (tmp_path / "ladder.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["ladder", "--table", "--out", str(out)]) == 0
    assert "bigram" in capsys.readouterr().out
    # the committed file is the whole cpu budget: anything else needs --out
    assert main(["ladder", "--budget", "smoke"]) == 2
    assert "pass --out FILE" in capsys.readouterr().err
    assert main(["ladder", "--table", "--out", str(tmp_path / "absent.json")]) == 2
    assert "python -m scratchlm ladder" in capsys.readouterr().err


def test_committed_results_cover_every_rung_on_the_cpu_budget():
    results = read_ladder()  # the committed file; a DataError here says how to regenerate it
    assert {r["rung"] for r in results} == set(RUNGS)
    assert {r["budget"] for r in results} == {"cpu"}
    assert all(len({r["seed"] for r in results if r["rung"] == name}) >= 2 for name in RUNGS)
    assert all(math.isfinite(r["bits_per_byte"]) for r in results)


class FakeRungs:
    """Stands in for `run_rung`: each call returns a made-up result of its budget, and the call numbered
    `interrupt_at` raises KeyboardInterrupt, as Ctrl-C in the middle of a rung does."""

    def __init__(self, interrupt_at: int | None = None):
        self.calls, self.interrupt_at = 0, interrupt_at

    def __call__(self, name, seed, budget, **kwargs):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return {**_fake(name, seed, 1.5, "custom"), "budget_config": budget.to_dict()}


@pytest.fixture
def fake_rungs(monkeypatch):
    def install(interrupt_at: int | None = None) -> FakeRungs:
        fake = FakeRungs(interrupt_at)
        monkeypatch.setattr(ladder_run, "run_rung", fake)
        return fake

    return install


def _existing(path, budget_config, *rungs) -> list[dict]:
    results = [{**_fake(rung, 0, 3.0), "budget_config": budget_config} for rung in rungs]
    write_ladder(results, path)
    return results


def test_ladder_out_adds_to_an_existing_results_file_instead_of_replacing_it(tmp_path, fake_rungs):
    """Regression (issue 22, item 1): `ladder --out FILE` replaced an existing results file silently."""
    out = tmp_path / "ladder.json"
    kept = _existing(out, SMOKE.to_dict(), "gpt", "rope")
    fake_rungs()
    assert main(["ladder", "--budget", "smoke", "--rungs", "bigram", "gpt", "--seeds", "0", "--out", str(out)]) == 0
    results = read_ladder(out)
    assert [(r["rung"], r["bits_per_byte"]) for r in results] == [("gpt", 1.5), ("rope", 3.0), ("bigram", 1.5)]
    assert results[1] == kept[1]  # untouched; gpt seed 0 was measured again, in its place


def test_ctrl_c_during_ladder_leaves_the_file_with_only_the_finished_rungs_added(tmp_path, fake_rungs, capsys):
    """Regression (issue 22, item 1): a Ctrl-C replaced the results file with the interrupted run's results."""
    out = tmp_path / "ladder.json"
    kept = _existing(out, SMOKE.to_dict(), "gpt", "rope")
    fake_rungs(interrupt_at=2)
    argv = ["ladder", "--budget", "smoke", "--rungs", "bigram", "one-head", "--seeds", "0", "--out", str(out)]
    assert main(argv) == 130
    assert [r["rung"] for r in read_ladder(out)] == ["gpt", "rope", "bigram"]
    assert read_ladder(out)[:2] == kept
    # interrupted before its first rung finished: the file is as it was, byte for byte
    before = out.read_bytes()
    fake_rungs(interrupt_at=1)
    assert main(argv) == 130
    assert out.read_bytes() == before


def test_ctrl_c_during_ladder_never_shrinks_the_committed_results(tmp_path, fake_rungs, monkeypatch):
    """Regression (issue 22, item 1): without --out, a Ctrl-C replaced the committed results in the package."""
    committed = tmp_path / "results.json"
    committed.write_bytes(RESULTS_PATH.read_bytes())
    monkeypatch.setattr(cli_ladder, "RESULTS_PATH", committed)
    before = read_ladder(committed)
    fake_rungs(interrupt_at=2)
    assert main(["ladder", "--budget", "cpu", "--seeds", "0"]) == 130
    after = read_ladder(committed)
    assert len(after) == len(before)  # the first rung's seed 0 measured again in its place, nothing lost
    assert [(r["rung"], r["seed"]) for r in after] == [(r["rung"], r["seed"]) for r in before]
    assert sum(a != b for a, b in zip(after, before, strict=True)) == 1


def test_ladder_refuses_a_folder_or_a_file_of_another_budget_before_training(tmp_path, fake_rungs, capsys):
    fake = fake_rungs()
    assert main(["ladder", "--budget", "smoke", "--out", str(tmp_path)]) == 2
    assert "it is a folder" in capsys.readouterr().err
    out = tmp_path / "ladder.json"
    _existing(out, SMOKE.to_dict(), "gpt")
    before = out.read_bytes()
    assert main(["ladder", "--budget", "smoke", "--max-iters", "3", "--out", str(out)]) == 2
    assert "another budget (they differ in --max-iters)" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_bytes(b"\xff not json")
    assert main(["ladder", "--budget", "smoke", "--out", str(broken)]) == 2
    assert "not a ladder results file" in capsys.readouterr().err
    assert fake.calls == 0 and out.read_bytes() == before and broken.read_bytes() == b"\xff not json"


def test_ladder_refuses_a_width_that_cannot_fit_before_training(tmp_path, fake_rungs, capsys):
    fake = fake_rungs()
    argv = ["ladder", "--budget", "smoke", "--rungs", "gpt", "--n-embd", str(2**20), "--n-head", "4"]
    assert main([*argv, "--out", str(tmp_path / "l.json")]) == 2
    assert "training rung 'gpt' needs at least" in capsys.readouterr().err
    assert fake.calls == 0 and not (tmp_path / "l.json").exists()
