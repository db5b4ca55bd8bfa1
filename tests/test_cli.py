import pytest

from scratchlm.cli import main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "sample", "tokenizer", "data"):
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err


def test_data_list_and_fetch(capsys):
    assert main(["data", "list"]) == 0
    assert "tinyshakespeare" in capsys.readouterr().out
    assert main(["data", "fetch", "tinyshakespeare"]) == 0
    assert capsys.readouterr().out.strip().endswith("tinyshakespeare.txt")


def test_data_fetch_unknown_is_exit_2_one_line(capsys):
    assert main(["data", "fetch", "nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown data file 'nonexistent'" in err
