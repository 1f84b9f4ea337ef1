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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import dill

from ..errors import StoreError
from .cache import VerifiedArtifact
from .manifest import Manifest, build_manifest
from .signing import current_key, sign
from .streams import HashingWriter, copy_stream
from .uri import EXTENSIONS, implied_format, manifest_name

METADATA_FILE = "modeldeploy.json"
PRETRAINED_FORMAT_VERSION = 1
_MEMBER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,200}\.(json|safetensors|txt|model)$")


class ExportableModel(Protocol):
    """What exporting needs of a loaded model (a ``ModelWrapper``; the store does not import it)."""

    name: str
    settings: Mapping[str, Any]
    model: Any
    tokenizer: Any

    def ensure_loaded(self) -> Any: ...


@dataclass(frozen=True)
class PluginOrigin:
    """The plugin distribution that defines an exported model (recorded in its manifest)."""

    distribution: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class PretrainedFiles:
    """An extracted ``pretrained`` artifact: a folder ``from_pretrained`` reads, and what it holds."""

    folder: Path
    model: str
    settings: dict[str, Any]


# ----------------------------------------------------------------------------- export
def export_artifact(wrapper: ExportableModel, output: Path, format: str = "dill",
                    origin: PluginOrigin | None = None) -> Manifest:
    """Write ``wrapper`` (loaded) to ``output`` in ``format`` and its (signed) manifest beside it."""
    output = Path(output)
    check_export_target(output, format)
    origin = origin or PluginOrigin()
    if format == "pretrained":
        _check_pretrained_weights(wrapper)
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
        manifest = sign(build_manifest(wrapper.name, format, writer.hexdigest(), writer.size,
                                       origin.distribution, origin.version))
        (output.parent / manifest_name(output.name)).write_bytes(manifest.to_json())
        os.replace(handle.name, output)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return manifest


def check_export_target(output: Path, format: str) -> None:
    """Refuse a bad format, file name or signing key before any model is loaded to export."""
    if format not in EXTENSIONS:
        raise StoreError(f"unknown artifact format {format!r}; use one of {', '.join(EXTENSIONS)}")
    if implied_format(Path(output).name) != format:
        raise StoreError(f"a {format} artifact's file name must end in {EXTENSIONS[format]}, got {Path(output).name!r}")
    current_key()  # a signing key that is set but too short is a ConfigError now, not after the export


def _check_pretrained_weights(wrapper: ExportableModel) -> None:
    """``save_pretrained`` writes torch weights in a float dtype: an int8-quantized or an ONNX Runtime
    model has none to write. Such a model travels as dill, or as the fp32 model with the setting."""
    precision, runtime = wrapper.settings.get("precision", "fp32"), wrapper.settings.get("runtime", "torch")
    if precision == "int8" or runtime != "torch":
        raise StoreError(f"model {wrapper.name!r} runs with precision {precision!r} and runtime {runtime!r}, which "
                         "the pretrained format cannot hold (it stores float torch weights): export it as dill, or "
                         "export the fp32 torch model and set precision/runtime where it is loaded")


def _write_pretrained(wrapper: ExportableModel, target: HashingWriter) -> None:
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


# ----------------------------------------------------------------------------- read
def unpickle_artifact(artifact: VerifiedArtifact) -> Any:
    """The object a verified ``dill`` artifact holds (unpickling runs its code: verified only)."""
    if artifact.format != "dill":
        raise StoreError(f"artifact {artifact.path} is a {artifact.format} artifact, not a dill one")
    with open(artifact.path, "rb") as source:
        try:
            return dill.load(source)
        except Exception as exc:  # a verified file that still cannot be read: wrong versions, missing plugin
            raise StoreError(f"artifact {artifact.path} could not be unpickled: {type(exc).__name__}: {exc}") from exc


def extract_pretrained(artifact: VerifiedArtifact, cache_dir: Path) -> PretrainedFiles:
    """Unpack a verified ``pretrained`` artifact into ``<cache>/pretrained/<sha256>`` (content-addressed,
    so reused as is) and read what it holds."""
    if artifact.format != "pretrained":
        raise StoreError(f"artifact {artifact.path} is a {artifact.format} artifact, not a pretrained one")
    folder = Path(cache_dir) / "pretrained" / artifact.sha256
    if not folder.is_dir():
        _extract(artifact, folder)
    metadata = _read_metadata(folder, str(artifact.path))
    return PretrainedFiles(folder, metadata["model"], metadata["settings"])


def _extract(artifact: VerifiedArtifact, folder: Path) -> None:
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
