import time

import pytest

from scratchlm.timing import seconds_per_call, synchronize
from scratchlm.tokenizers import visible


def test_seconds_per_call_times_each_repeat_after_untimed_warmup():
    calls = []

    def work():
        calls.append(time.perf_counter())
        time.sleep(0.01 if len(calls) > 2 else 0.0)  # the two warm-up calls are fast, the timed ones slow

    times = seconds_per_call(work, repeats=3, warmup=2, device="cpu")
    assert len(calls) == 5 and len(times) == 3
    assert all(0.009 < t < 1.0 for t in times)


def test_seconds_per_call_rejects_nonsense_counts():
    with pytest.raises(ValueError, match="repeats >= 1"):
        seconds_per_call(lambda: None, repeats=0)
    synchronize("cpu")  # a no-op, and never an error, on CPU
    synchronize(None)


def test_visible_draws_whitespace_and_keeps_the_rest():
    assert visible(" the\nend\t") == "␣the⏎end⇥"
    assert visible("") == ""
    assert visible("naïve") == "naïve"
