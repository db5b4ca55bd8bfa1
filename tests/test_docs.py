"""The documentation's promises: its links resolve, the README's commands parse, the CLI page is the parsers'
own, and the library page's examples run as written."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scratchlm.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
LESSONS = sorted((ROOT / "lessons_src").glob("[0-9][0-9]_*.py"))

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`]+`")  # may run over a line end
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target) and ![alt](target)
HTML_SOURCE = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"")


def markdown_of(path: Path) -> str:
    """The markdown of a page, or of a lesson script's markdown cells (their `# ` comment lines)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        return text
    lines, in_markdown = [], False
    for line in text.splitlines():
        if line.startswith("# %%"):
            in_markdown = "[markdown]" in line
        elif in_markdown and line.startswith("#"):
            lines.append(line[2:])
    return "\n".join(lines)


def relative_targets(markdown: str) -> list[str]:
    """The relative link and image targets of `markdown`, outside code; web addresses and bare #anchors left out."""
    prose = CODE_SPAN.sub("", FENCE.sub("", markdown))
    targets = LINK.findall(prose) + HTML_SOURCE.findall(prose)
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", t, re.I)]


def test_relative_targets_finds_links_and_images_but_not_code_or_web_addresses():
    markdown = (
        'See [the docs](docs/cli.md#train) and ![plot](img/a.png "title"), <img src="b.png">, '
        "[web](https://example.com), [anchor](#top), `[not](code.md)`, `x[i](y)`.\n"
        "```python\nmodel.blocks[0](x)\n```\n"
    )
    assert relative_targets(markdown) == ["docs/cli.md#train", "img/a.png", "b.png"]


@pytest.mark.parametrize("page", PAGES + LESSONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    missing = [
        target for target in relative_targets(markdown_of(page)) if not (page.parent / target.split("#")[0]).exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to what does not exist: {missing}"


# ------------------------------------------------------------------------------------- the README's commands


def readme_commands() -> list[str]:
    """Each command of the README's bash blocks and of its inline `python -m scratchlm ...` and `python X.py`
    spans, split at `&&`."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        lines += [line.split(" #")[0] for line in block.replace("\\\n", " ").splitlines()]
    spans = [" ".join(span.strip("`").split()) for span in CODE_SPAN.findall(FENCE.sub("", text))]
    lines += [span for span in spans if "-m scratchlm " in span or re.match(r"python \S+\.py\b", span)]
    return list(dict.fromkeys(part.strip() for line in lines for part in line.split("&&") if part.strip()))


def scratchlm_arguments(command: str) -> list[str] | None:
    """The arguments after `-m scratchlm` (python or torchrun), or None for a command that is not scratchlm's."""
    words = shlex.split(command)
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "scratchlm":
            return words[i + 2 :]
    return None


def test_the_readme_shows_the_two_commands_exactly():
    commands = readme_commands()
    assert "pip install -r requirements.txt" in commands and "python -m scratchlm train" in commands
    assert "pip install -r requirements-dev.txt" in commands and "pytest" in commands
    text = README.read_text(encoding="utf-8")
    assert text.index("download.pytorch.org/whl/cpu") < text.index("pip install -r requirements.txt")


@pytest.mark.parametrize("command", readme_commands())
def test_each_readme_command_is_well_formed(command):
    """scratchlm's commands must parse as written (flags, values, choices); `pip install -r FILE` must name a
    file here; a script must exist; anything else (git, venv, pip install torch) is taken as written."""
    arguments = scratchlm_arguments(command)
    if arguments is not None:
        build_parser().parse_args(arguments)  # argparse exits 2 on an unknown flag or a bad value
        return
    words = shlex.split(command)
    if words[:3] == ["pip", "install", "-r"]:
        assert (ROOT / words[3]).is_file(), command
    elif words[0] == "python" and words[1].endswith(".py"):
        assert (ROOT / words[1]).is_file(), command
        assert all(any(ROOT.glob(w)) for w in words[2:] if w.endswith(".ipynb")), command  # NN_*.ipynb too


def test_each_readme_command_s_help_runs():
    """What a reader would type first: `python -m scratchlm CMD --help`, in a real process, exits 0."""
    commands = sorted({args[0] for c in readme_commands() if (args := scratchlm_arguments(c))})
    assert commands, "the README shows no scratchlm command"
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "scratchlm", command, "--help"], capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0 and "usage:" in result.stdout, f"{command} --help: {result.stderr}"


# --------------------------------------------------------------------------------------------- the CLI page


def cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "tools" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_page_is_generated_from_the_current_parsers():
    page = ROOT / "docs" / "cli.md"
    assert page.read_text(encoding="utf-8") == cli_reference().render(), (
        "docs/cli.md is stale: run python tools/cli_reference.py"
    )


def test_the_cli_page_names_every_command_and_flag():
    """Independent of the generator: every (sub)command has a heading, and each of its flags appears."""
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    module = cli_reference()
    todo = [(name, parser) for name, _, parser in module.subcommands(build_parser())]
    while todo:
        name, parser = todo.pop()
        heading = re.search(rf"^#+ {re.escape(name)}$", page, re.M)
        assert heading, f"no section for {name}"
        section = page[heading.end() :].split("\n## ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in ("-h", "--help") or f"`{flag}" in section, f"{name}: {flag} is not on the page"
        todo += [(f"{name} {child}", sub) for child, _, sub in module.subcommands(parser)]


def test_every_command_has_an_example_and_each_parses():
    module = cli_reference()
    todo = [(name, parser) for name, _, parser in module.subcommands(build_parser())]
    while todo:
        name, parser = todo.pop()
        children = module.subcommands(parser)
        todo += [(f"{name} {child}", sub) for child, _, sub in children]
        if children:
            continue
        assert module.EXAMPLES.get(name), f"tools/cli_reference.py has no example for {name}"
        for example in module.EXAMPLES[name]:
            arguments = scratchlm_arguments(example)
            assert arguments[: len(name.split())] == name.split(), example
            build_parser().parse_args(arguments)


# ------------------------------------------------------------------------------------------ the library page


def test_the_library_page_examples_run_as_written(tmp_path):
    """Its python blocks, in order, in one fresh interpreter, in smoke mode, from an empty folder."""
    page = (ROOT / "docs" / "library.md").read_text(encoding="utf-8")
    code = "\n".join(re.findall(r"^```python\n(.*?)^```", page, re.S | re.M))
    env = {**os.environ, "SCRATCHLM_SMOKE": "1", "MPLBACKEND": "Agg", "SCRATCHLM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
