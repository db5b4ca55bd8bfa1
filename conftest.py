"""The smoke-mode time budget of every notebook.

It lives at the repository root because pytest calls a conftest's per-test hooks only for tests below it.
nbval runs each notebook cell as a test item; we add up the time of a notebook's items and fail the
session if a lesson takes longer than its budget in smoke mode, so CI stays fast as lessons grow.
Notebook cells are also exempt from pytest-timeout's per-test limit: nbval times each cell itself.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

NOTEBOOK_BUDGET_S = 60.0  # smoke mode, per lesson

_notebook_seconds: dict[str, float] = defaultdict(float)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # a cell is limited by --nbval-cell-timeout; pytest-timeout's per-test `timeout` (pyproject.toml) is for unit tests
    for item in items:
        if item.nodeid.split("::")[0].endswith(".ipynb"):
            item.add_marker(pytest.mark.timeout(0))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def _over_budget() -> dict[str, float]:
    if os.environ.get("SCRATCHLM_SMOKE") != "1":
        return {}
    return {nb: s for nb, s in _notebook_seconds.items() if s > NOTEBOOK_BUDGET_S}


def pytest_terminal_summary(terminalreporter) -> None:
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook run times")
    for nb, seconds in sorted(_notebook_seconds.items()):
        terminalreporter.write_line(f"{nb}: {seconds:.1f} s")
    if over := _over_budget():
        terminalreporter.write_line(
            f"FAILED: over the {NOTEBOOK_BUDGET_S:.0f} s smoke-mode budget: {', '.join(over)}", red=True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _over_budget():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
