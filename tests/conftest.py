"""Shared test set-up, and the smoke-mode time budget of every notebook.

nbval runs each notebook cell as a test item; we add up the time of a notebook's items and fail the
session if a lesson takes longer than its budget in smoke mode, so CI stays fast as lessons grow.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_BUDGET_S = 60.0  # smoke mode, per lesson

_notebook_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _notebook_seconds or os.environ.get("SCRATCHLM_SMOKE") != "1":
        return
    over = {nb: s for nb, s in _notebook_seconds.items() if s > NOTEBOOK_BUDGET_S}
    lines = [f"  {nb}: {s:.1f} s" for nb, s in sorted(_notebook_seconds.items())]
    print("\nnotebook run times (smoke mode):\n" + "\n".join(lines))
    if over:
        print(f"FAILED: notebooks over the {NOTEBOOK_BUDGET_S:.0f} s smoke budget: {', '.join(over)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def tiny_text() -> str:
    """A small deterministic corpus for tests that do not need Tiny Shakespeare."""
    lines = [f"To be, or not to be: line {i} of a tiny play.\n" for i in range(200)]
    return "".join(lines)
