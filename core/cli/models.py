"""``modeldeploy list`` and ``modeldeploy predict``."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from ..errors import ModelDeployError
from ..loading import load
from ..plugins import allow_list_report, get_catalog


def add_commands(sub: argparse._SubParsersAction) -> None:
    listing = sub.add_parser("list", help="models the installed plugins provide, and broken plugins")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--server", metavar="URL",
                         help="list what a running server serves instead: each model's state, load attempts, "
                              "next retry and reason (its /models)")
    listing.set_defaults(func=run_list)

    predict = sub.add_parser("predict", help="run a model on one or more texts and print JSON")
    predict.add_argument("name", help="model name (see 'modeldeploy list')")
    predict.add_argument("texts", nargs="+", metavar="TEXT", help="text(s) to predict on; '-' reads stdin")
    predict.add_argument("--source", help="hub id or local folder instead of the plugin's default")
    predict.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    predict.add_argument("--sha256", help="for an artifact source: accept exactly these bytes")
    predict.add_argument("--trust-unsigned", action="store_true",
                         help="for an artifact source: accept one that cannot be verified (unsigned)")
    predict.set_defaults(func=run_predict)


def run_list(args: argparse.Namespace) -> int:
    if args.server:
        return _list_served(args.server, args.json)
    catalog = get_catalog()
    rows = [
        {
            "name": entry.name,
            "task": entry.wrapper_class.task,
            "plugin": entry.distribution or entry.plugin,
            "version": entry.version,
            "default_source": entry.wrapper_class.default_source,
            "description": entry.wrapper_class.description,
        }
        for entry in sorted(catalog.models.values(), key=lambda e: e.name)
    ]
    failures = [{"plugin": f.distribution or f.plugin, "error": f.error} for f in catalog.failures]
    allow_list = allow_list_report(catalog)
    if args.json:
        print(json.dumps({"models": rows, "failed_plugins": failures, "allow_list": allow_list}, indent=2))
        return 0
    if not rows and not allow_list:
        print("No models installed. pip install a plugin such as modeldeploy-sentiment.")
    elif not rows:
        print("No models: the MODELDEPLOY_PLUGINS allow-list leaves every installed plugin out.")
    else:
        _print_table(("NAME", "TASK", "PLUGIN", "VERSION", "DEFAULT SOURCE"),
                     [(r["name"], r["task"], r["plugin"], r["version"] or "-", r["default_source"]) for r in rows])
    for failure in failures:
        print(f"FAILED plugin {failure['plugin']}: {failure['error']}")
    for line in allow_list:
        print(line)
    return 0


def _print_table(headers: tuple[str, ...], table: list[tuple[Any, ...]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *table)]
    for line in (headers, *table):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())


def _list_served(server: str, as_json: bool) -> int:
    """The running server's view: what is ready, what failed and when it is tried again."""
    url = server.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (the user's own server)
            models = json.load(response)["models"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise ModelDeployError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from None
    if as_json:
        print(json.dumps({"models": models}, indent=2))
        return 0
    table = []
    for model in models:
        status = model["status"]
        retry = status.get("next_retry_in_seconds")
        table.append((model["name"], status["state"], status.get("attempts", "-"),
                      "-" if retry is None else f"in {retry} s", status.get("reason") or ""))
    _print_table(("NAME", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "REASON"), table)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    texts = [sys.stdin.read() if text == "-" else text for text in args.texts]
    wrapper = load(args.name, source=args.source, device=args.device, sha256=args.sha256,
                   trust_unsigned=args.trust_unsigned)
    result = wrapper.predict(texts[0] if len(texts) == 1 else texts)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
