"""The two artifact formats: writing them from a loaded wrapper, and reading them back.

- ``dill``: the loaded ``ModelWrapper`` serialized with dill (the seed app's format). Loading it
  runs pickled code, so it is only ever opened after ``verification.verify`` accepted the bytes.
- ``pretrained``: an uncompressed tar of the wrapper's ``save_pretrained`` files (safetensors
  weights, tokenizer and config JSON) plus ``modeldeploy.json`` naming the model and its
  settings. Reading it unpickles nothing: members are checked against an allow-list of flat
  file names and data-only extensions, then ``from_pretrained`` reads them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dill

from ..devices import resolve_device, validate_device
from ..errors import StoreError
from ..plugins import ModelEntry
from ..wrapper import ModelWrapper
from .cache import VerifiedArtifact
from .manifest import Manifest, build_manifest
from .signing import sign
from .streams import HashingWriter, copy_stream
from .uri import EXTENSIONS, artifact_format, manifest_name

METADATA_FILE = "modeldeploy.json"
PRETRAINED_FORMAT_VERSION = 1
_MEMBER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,200}\.(json|safetensors|txt|model)$")


# ----------------------------------------------------------------------------- export
def export_artifact(wrapper: ModelWrapper, entry: ModelEntry, output: Path, format: str = "dill") -> Manifest:
    """Write ``wrapper`` (loaded) to ``output`` in ``format`` and its (signed) manifest beside it."""
    if format not in EXTENSIONS:
        raise StoreError(f"unknown artifact format {format!r}; use one of {', '.join(EXTENSIONS)}")
    output = Path(output)
    if artifact_format(output.name) != format:
        raise StoreError(f"a {format} artifact's file name must end in {EXTENSIONS[format]}, got {output.name!r}")
    wrapper.ensure_loaded()
    output.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=output.parent, prefix=".export-", delete=False)
    try:
        with handle:
            writer = HashingWriter(handle)
            if format == "dill":
                dill.dump(wrapper, writer)
            else:
                _write_pretrained(wrapper, writer)
        manifest = sign(build_manifest(entry.name, format, writer.hexdigest(), writer.size,
                                       entry.distribution, entry.version))
        (output.parent / manifest_name(output.name)).write_bytes(manifest.to_json())
        os.replace(handle.name, output)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return manifest


def _write_pretrained(wrapper: ModelWrapper, target: HashingWriter) -> None:
    with tempfile.TemporaryDirectory(prefix="modeldeploy-export-") as folder:
        wrapper.model.save_pretrained(folder)
        wrapper.tokenizer.save_pretrained(folder)
        metadata = {"format_version": PRETRAINED_FORMAT_VERSION, "model": wrapper.name,
                    "settings": dict(wrapper.settings)}
        Path(folder, METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        with tarfile.open(fileobj=target, mode="w|") as tar:
            for path in sorted(Path(folder).iterdir()):
                info = tar.gettarinfo(str(path), arcname=path.name)
                info.uid = info.gid = info.mtime = 0
                info.uname = info.gname = ""
                with open(path, "rb") as source:
                    tar.addfile(info, source)


# ----------------------------------------------------------------------------- open
def open_artifact(
    artifact: VerifiedArtifact,
    cache_dir: Path,
    expected_name: str | None = None,
    device: str = "auto",
    settings: Mapping[str, Any] | None = None,
) -> ModelWrapper:
    """Turn a verified artifact file into a loaded wrapper for ``expected_name`` (if given)."""
    label = str(artifact.path)
    if expected_name and artifact.manifest is not None and artifact.manifest.name != expected_name:
        raise StoreError(f"artifact {label} holds model {artifact.manifest.name!r}, not {expected_name!r}")
    if artifact.format == "dill":
        wrapper = _open_dill(artifact.path, label, expected_name)
        if settings:
            wrapper.settings = wrapper.resolve_settings({**wrapper.settings, **settings})
        return _place(wrapper, device)
    folder = _extract_pretrained(artifact, cache_dir)
    metadata = _read_metadata(folder, label)
    if expected_name and metadata["model"] != expected_name:
        raise StoreError(f"artifact {label} holds model {metadata['model']!r}, not {expected_name!r}")
    from ..api import model_entry

    wrapper_class = model_entry(metadata["model"]).wrapper_class
    merged = {**metadata["settings"], **(settings or {})}
    return wrapper_class(source=str(folder), device=device, settings=merged).ensure_loaded()


def _open_dill(path: Path, label: str, expected_name: str | None) -> ModelWrapper:
    with open(path, "rb") as source:
        try:
            wrapper = dill.load(source)
        except Exception as exc:  # a verified file that still cannot be read: wrong versions, missing plugin
            raise StoreError(f"artifact {label} could not be unpickled: {type(exc).__name__}: {exc}") from exc
    if not isinstance(wrapper, ModelWrapper) or not wrapper.is_loaded:
        raise StoreError(f"artifact {label} does not hold a loaded ModelWrapper (got {type(wrapper).__name__})")
    if expected_name and wrapper.name != expected_name:
        raise StoreError(f"artifact {label} holds model {wrapper.name!r}, not {expected_name!r}")
    return wrapper


def _place(wrapper: ModelWrapper, device: str) -> ModelWrapper:
    """Move an unpickled model to the configured device (artifacts are exported on CPU)."""
    wrapper.requested_device = validate_device(device)
    target = resolve_device(wrapper.requested_device)
    if wrapper.device != target:
        wrapper.model.to(target)
        wrapper.device = target
    return wrapper


def _extract_pretrained(artifact: VerifiedArtifact, cache_dir: Path) -> Path:
    """Unpack into ``<cache>/pretrained/<sha256>`` (content-addressed, so reused as is)."""
    folder = Path(cache_dir) / "pretrained" / artifact.sha256
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".extract-"))
    try:
        with tarfile.open(artifact.path, mode="r:") as tar:
            for member in tar:
                if not member.isfile() or not _MEMBER.match(member.name):
                    raise StoreError(
                        f"artifact {artifact.path} contains {member.name!r}, which a pretrained artifact may "
                        "not hold (only flat .json/.safetensors/.txt/.model files)"
                    )
                with tar.extractfile(member) as source, open(staging / member.name, "xb") as target:
                    copy_stream(source, target)
        os.replace(staging, folder)
    except tarfile.TarError as exc:
        raise StoreError(f"artifact {artifact.path} is not a valid pretrained artifact: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _read_metadata(folder: Path, label: str) -> dict[str, Any]:
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"artifact {label} has no readable {METADATA_FILE}: {exc}") from None
    if (
        not isinstance(metadata, dict)
        or metadata.get("format_version") != PRETRAINED_FORMAT_VERSION
        or not isinstance(metadata.get("model"), str)
        or not isinstance(metadata.get("settings"), dict)
    ):
        raise StoreError(f"artifact {label}: {METADATA_FILE} must hold format_version 1, model and settings")
    return metadata
