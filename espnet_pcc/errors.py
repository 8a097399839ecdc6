"""User-facing errors and the CLI wrapper that turns them into one clean line.

A :class:`UserError` is a problem with the user's input (bad value, missing tool, id collision,
checkpoint/config mismatch). CLIs print ``error: <message>`` and exit 2 without a traceback;
``--verbose`` re-raises so the full traceback shows. Anything else is a bug and propagates.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional, Sequence


class UserError(Exception):
    """An error caused by user input; its message names the bad value."""


def print_error(prog: str, message: object) -> None:
    """``<prog>: error: <message>`` on stderr, after whatever the program has written to stdout
    so far: where both streams go to one file (a log, a terminal), the error is its last line,
    not followed by stdout's buffer at exit."""
    sys.stdout.flush()
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


def run_cli(body: Callable[[], None], verbose: bool, prog: str) -> None:
    """Run a CLI body; on :class:`UserError` print one line and exit 2 (traceback if verbose)."""
    try:
        body()
    except UserError as e:
        if verbose:
            raise
        print_error(prog, e)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def setup_logging(verbose: bool) -> None:
    """Progress at INFO on stderr (ESPnet's format); DEBUG when verbose."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def run_main(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
             body: Callable[[argparse.Namespace], None]) -> None:
    """Add ``--verbose`` to the parser, parse argv, set up logging and run ``body(args)`` under
    :func:`run_cli` as ``parser.prog``.

    The parser must not define ``--verbose`` itself.
    """
    parser.add_argument("--verbose", action="store_true", help="debug logs and full tracebacks")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    run_cli(lambda: body(args), verbose=args.verbose, prog=parser.prog)
