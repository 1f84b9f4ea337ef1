"""``modeldeploy`` command line: one sub-module per group of sub-commands.

Each sub-module exposes ``add_commands(subparsers)`` and sets ``func`` on its parsers; errors the
user can cause (``ModelDeployError``) print one line on stderr (and one saying how to fix it, when
the error knows) and exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import ModelDeployError
from ..logs import LOG_FORMAT_ENV, LOG_FORMATS, configure_logging, default_log_format
from . import models, scaffold, serve, store

COMMAND_GROUPS = [models, serve, store, scaffold]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy", description="Serve HuggingFace models from pip-installable plugins."
    )
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=default_log_format(),
                        help=f"text for people, json for log collectors (default from ${LOG_FORMAT_ENV}, else text)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def quiet_weight_loading() -> None:
    """No per-tensor "Loading weights" progress bar on every command (huggingface_hub reads the
    variable when imported; transformers' own switch covers an import that came first)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_weight_loading()
    try:
        configure_logging(args.log_level, args.log_format)
        return args.func(args) or 0
    except ModelDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
