"""chaosgd.tools.bench.cli: every benchmark is a subcommand, documented in the help."""

import pytest

from chaosgd.tools.bench import cli

COMMANDS = ["curvature", "tangent", "ensembles", "costs", "gpu"]


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
