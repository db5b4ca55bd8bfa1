"""The test run's notebook defaults (root conftest.py): a cell that runs past --nbval-cell-timeout fails as a
timeout even when the interrupted code turns the interrupt into its own exception, as the training loop does
(regression, issue 22 item 10: lesson 10's timed-out sweep cell read as `TrainingInterrupted`), and smoke mode
is the test run's default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

CELL = """\
import time
from scratchlm.training import TrainingInterrupted
try:
    time.sleep(60)
except KeyboardInterrupt:  # what train() does with Ctrl-C: checkpoint, then its own exception
    raise TrainingInterrupted("stopped at step 3, checkpoint saved in out (resume=True or --resume continues)")
"""


def test_a_cell_past_its_timeout_fails_as_a_timeout_not_as_the_interrupted_codes_error(tmp_path):
    smoke = "import os\nassert os.environ['SCRATCHLM_SMOKE'] == '1'  # the test run's default"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(smoke), nbformat.v4.new_code_cell(CELL)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "slow.ipynb"
    nbformat.write(notebook, path)
    env = {k: v for k, v in os.environ.items() if k != "SCRATCHLM_SMOKE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", str(path), "--nbval-cell-timeout=3", "-q", "-rf",
         "--rootdir", str(ROOT), "-o", "addopts=--nbval-lax --nbval-current-env -p no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "1 failed, 1 passed" in out, out[-3000:]
    assert "Timeout: the cell ran past --nbval-cell-timeout=3 s" in out, out[-3000:]
