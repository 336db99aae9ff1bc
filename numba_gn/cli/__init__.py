"""The `numba-gn` command: `info`, `warmup`, `check`, `demo` and `bench`.

Each subcommand lives in its own module with `add_arguments(parser)` and `run(args) -> int`;
heavy imports happen inside `run` so `numba-gn --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand name -> (module, one-line help)
COMMANDS = {
    "info": ("numba_gn.cli.info", "versions, threading layer, thread count, cache folder"),
    "warmup": ("numba_gn.cli.warmup", "compile or load every kernel now, with progress"),
    "check": ("numba_gn.cli.check", "check accuracy and speed on every layout"),
    "bench": ("numba_gn.cli.bench", "time and accuracy next to np.copyto, NumPy and PyTorch"),
    "demo": ("numba_gn.cli.demo", "train a small CNN with GroupNormalization on digits"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="numba-gn", description="numba_gn: fast, exact group normalization on the CPU."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `numba-gn`; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
