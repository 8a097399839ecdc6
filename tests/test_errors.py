"""run_main: a UserError is one stderr line and exit 2; --verbose (added by run_main) re-raises it."""
import argparse
import importlib

import pytest

from espnet_pcc import registry
from espnet_pcc.errors import UserError, run_main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo_cli")
    p.add_argument("--name", default="x")
    return p


def fail(args: argparse.Namespace) -> None:
    raise UserError(f"bad --name {args.name}")


def test_body_gets_the_parsed_args(capsys):
    run_main(parser(), ["--name", "y"], lambda args: print(f"name={args.name}"))
    assert capsys.readouterr().out == "name=y\n"


def test_user_error_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        run_main(parser(), ["--name", "y"], fail)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["demo_cli: error: bad --name y"]


def test_verbose_reraises():
    with pytest.raises(UserError, match="bad --name y"):
        run_main(parser(), ["--name", "y", "--verbose"], fail)


def test_interrupt_exits_130(capsys):
    def interrupted(args: argparse.Namespace) -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        run_main(parser(), [], interrupted)
    assert e.value.code == 130
    assert capsys.readouterr().err.splitlines() == ["demo_cli: interrupted"]


def test_run_main_adds_verbose(capsys):
    run_main(parser(), ["--verbose"], lambda args: print(f"verbose={args.verbose}"))
    run_main(parser(), [], lambda args: print(f"verbose={args.verbose}"))
    assert capsys.readouterr().out == "verbose=True\nverbose=False\n"


# asr_train is ESPnet's own parser (no run_main).
@pytest.mark.parametrize("module", [m for m in registry.CLI_MODULES if m != "asr_train"])
def test_every_cli_gets_verbose_from_run_main(module, capsys):
    p = importlib.import_module(f"espnet_pcc.bin.{module}").get_parser()
    assert "--verbose" not in p._option_string_actions  # run_main adds it
    with pytest.raises(SystemExit) as e:
        run_main(p, ["--help"], lambda args: None)
    assert e.value.code == 0
    assert "--verbose" in capsys.readouterr().out


def test_the_error_is_the_last_line_where_both_streams_go_to_one_file():
    """stdout is block-buffered into a file or pipe: what the CLI printed before the error must
    not come after it at exit."""
    import os
    import subprocess
    import sys

    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    code = ("from espnet_pcc.errors import UserError, run_cli\n"
            "def body():\n"
            "    print('a progress line on stdout')\n"
            "    raise UserError('bad value 3')\n"
            "run_cli(body, verbose=False, prog='some_cli')\n")
    result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=buffered)
    assert result.returncode == 2
    assert result.stdout.splitlines() == ["a progress line on stdout",
                                          "some_cli: error: bad value 3"]
