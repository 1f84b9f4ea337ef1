"""``modeldeploy new-plugin``: generate a plugin package to edit, install, test and serve."""

from __future__ import annotations

import argparse

from ..scaffold import new_plugin, plugin_names
from ..tasks import TASKS


def add_commands(sub: argparse._SubParsersAction) -> None:
    command = sub.add_parser("new-plugin", help="generate a pip-installable plugin package for a new model")
    command.add_argument("name", help="model name: lowercase letters, digits, '_', '.', '-' (e.g. emotion)")
    command.add_argument("--task", required=True, choices=sorted(TASKS),
                         help="what the model does; its base class comes from modeldeploy.tasks")
    command.add_argument("--directory", default=".", metavar="DIR",
                         help="where to create modeldeploy-NAME/ (default: the current folder)")
    command.set_defaults(func=run_new_plugin)


def run_new_plugin(args: argparse.Namespace) -> int:
    folder = new_plugin(args.name, args.task, args.directory)
    names = plugin_names(args.name)
    print(f"Created {folder}/, the {args.task} plugin {names.distribution}:")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(folder)}")
    print(f"Next: set default_source in {folder / names.package / '__init__.py'} (see its README.md), then")
    print(f"  pip install -e {folder}")
    print(f"  cd {folder} && python -m pytest")
    print(f"  modeldeploy predict {args.name} \"some text\"")
    return 0
