"""``modeldeploy`` command line: one sub-module per group of sub-commands.

Each sub-module exposes ``add_commands(subparsers)`` and sets ``func`` on its parsers; errors the
user can cause (``ModelDeployError``) print one line on stderr and exit with status 1.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ModelDeployError
from ..logs import LOG_FORMAT_ENV, LOG_FORMATS, configure_logging, default_log_format
from . import models, serve, store

COMMAND_GROUPS = [models, serve, store]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy", description="Serve HuggingFace models from pip-installable plugins."
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=default_log_format(),
                        help=f"text for people, json for log collectors (default from ${LOG_FORMAT_ENV}, else text)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configure_logging(args.log_level, args.log_format)
        return args.func(args) or 0
    except ModelDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
