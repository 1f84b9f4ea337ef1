"""``modeldeploy`` command line: one sub-module per group of sub-commands.

Each sub-module exposes ``add_commands(subparsers)`` and sets ``func`` on its parsers; errors the
user can cause (``ModelDeployError``) print one line on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import ModelDeployError
from . import models

COMMAND_GROUPS = [models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy", description="Serve HuggingFace models from pip-installable plugins."
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except ModelDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
