"""Fixtures shared by the unit tests."""

import pytest


@pytest.fixture
def tiny_text() -> str:
    """A small deterministic corpus for tests that do not need Tiny Shakespeare."""
    lines = [f"To be, or not to be: line {i} of a tiny play.\n" for i in range(200)]
    return "".join(lines)
