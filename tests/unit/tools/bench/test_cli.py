"""chaosgd.tools.bench.cli: every benchmark is a subcommand, documented in the help."""

import subprocess
import sys

import pytest

from chaosgd.tools.bench import cli

COMMANDS = ["curvature", "tangent", "ensembles", "costs", "topk", "gpu"]


def test_every_command_is_a_subcommand_and_documented():
    assert "{" + ",".join(COMMANDS) + "}" in cli.build_parser().format_usage()
    for command in COMMANDS:
        assert f"``{command}``:" in cli.__doc__
        assert f"``{command}``" in cli.main.__doc__


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_exits_0(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: python -m chaosgd.tools.bench" in capsys.readouterr().out


def test_a_json_file_that_cannot_be_written_is_named_and_nothing_is_left(tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    target = blocked / "rows.json"  # its folder is a file: creating it fails
    small = ["--arch", "cnn", "--steps", "2", "--spectrum-steps", "1", "--ensemble-steps", "2"]
    args = ["costs", *small, "--eps-count", "1", "--readout-hidden", "2", "--json", str(target)]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(target) in err
    assert list(tmp_path.iterdir()) == [blocked]
    assert cli.main([*args[:-1], str(tmp_path / "rows.json")]) == 0
    assert (tmp_path / "rows.json").read_text().startswith("[")


def test_the_module_runs_as_the_docs_call_it():
    proc = subprocess.run(
        [sys.executable, "-m", "chaosgd.tools.bench", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m chaosgd.tools.bench" in proc.stdout
