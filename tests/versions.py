"""Model versions for tests of swaps: the same weights under other label names, so answers show
which version served them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def relabelled_copy(folder: Path, target: Path, labels: list[str]) -> Path:
    """A copy of the classifier in ``folder`` whose labels are ``labels`` (in id order)."""
    shutil.copytree(folder, target)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    config["label2id"] = {label: i for i, label in enumerate(labels)}
    config_path.write_text(json.dumps(config))
    return target
