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


def test_output_folder_is_created_at_once_and_a_file_in_its_place_is_one_clear_error(tmp_path):
    from scratchlm.errors import OutputError
    from scratchlm.files import output_folder

    made = output_folder(tmp_path / "a" / "b", "report folder")
    assert made.is_dir()
    assert output_folder(made) == made  # an existing folder is fine
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"report folder .* is a file; it must be a folder"):
        output_folder(blocker, "report folder")
    with pytest.raises(OutputError, match="cannot write to out_dir"):
        output_folder(blocker / "inside", "out_dir")
