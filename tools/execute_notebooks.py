"""Execute lesson notebooks in place, in default mode, the way their committed outputs are made.

    python tools/execute_notebooks.py notebooks/01_bigram.ipynb [more.ipynb ...]

Runs each notebook top to bottom in a fresh kernel (no time limit, SCRATCHLM_SMOKE unset), then gives every
progress-bar widget a plain-text fallback showing its *final* state. Jupyter stores a widget's text
fallback when the bar is first displayed ("0%| 0/3000"), and GitHub shows only that fallback; the final
state lives in the notebook's widget metadata, so we copy it from there.
"""

from __future__ import annotations

import html
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def final_progress_text(model_id: str, state: dict) -> str | None:
    """The text of a finished tqdm bar (an HBox of HTML, FloatProgress, HTML), or None if not one."""
    box = state.get(model_id, {})
    if box.get("model_name") != "HBoxModel":
        return None
    parts = [state.get(child.removeprefix("IPY_MODEL_"), {}) for child in box["state"].get("children", [])]
    if [p.get("model_name") for p in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, bar, right = (p["state"] for p in parts)
    width = 10
    filled = round(width * bar.get("value", 0) / bar["max"]) if bar.get("max") else 0
    text = f"{left.get('value', '')}|{'█' * filled}{' ' * (width - filled)}|{right.get('value', '')}"
    return html.unescape(text).replace("\u2007", " ")


def fix_widget_fallbacks(nb: nbformat.NotebookNode) -> int:
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    fixed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view and (text := final_progress_text(view["model_id"], state)) is not None:
                output["data"]["text/plain"] = text
                fixed += 1
    return fixed


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    seconds = time.perf_counter() - start
    fixed = fix_widget_fallbacks(nb)
    nbformat.write(nb, path)
    print(f"{path}: executed in {seconds:.0f} s, {fixed} progress bars given their final text")


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    os.environ.pop("SCRATCHLM_SMOKE", None)
    for path in paths:
        execute(Path(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
