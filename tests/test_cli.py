import click
import pytest
from click.testing import CliRunner

from edvr_cli import __version__
from edvr_cli.cli import SUBCOMMANDS, main


def _command(name):
    return main.get_command(click.Context(main), name)


def test_help_lists_every_subcommand_with_its_one_line_help_and_the_typical_use():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for name in SUBCOMMANDS:
        # the line under Commands: shows the command's own short help, not a stub's
        assert any(line.split() == [name, *_command(name).short_help.split()] for line in lines), name
        assert "Not built yet" not in _command(name).help
    for example in ("edvr enhance clip.mp4 -o clip_x4.mp4", "edvr eval --gt", "edvr train --preset small"):
        assert example in result.output
    assert "--version" in result.output and "-h, --help" in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_option_of_every_command_is_explained_in_its_help(name):
    command = _command(name)
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {name} ")
    text = " ".join(result.output.split())  # help wraps lines: compare with whitespace folded
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        assert (param.help or "").strip(), f"{name} {param.opts[0]} has no help"
        for opt in param.opts:
            assert opt in result.output, f"{name} --help does not show {opt}"
        assert " ".join(param.help.split())[:30] in text, f"{name} {param.opts[0]}: help text not shown"
        if isinstance(param.type, click.Choice):  # the choices are listed
            assert all(str(choice) in result.output for choice in param.type.choices), param.opts[0]
