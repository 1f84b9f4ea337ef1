"""What every results file records: the machine it ran on, and the figures as JSON plus a report."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ab import cpu_name
from plain import device_name, resolve_device


def machine(device: str = "cpu") -> str:
    """The CPU, its cores and Python, and the GPU when ``device`` resolves to one."""
    gpu = device_name(device) if resolve_device(device).startswith("cuda") else "no GPU"
    return f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}, {gpu}"


def save(out: Path, results: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> None:
    """Write ``out``.json and ``out``.md (the rendered report), and print the report."""
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(render(results))
    print(render(results))
