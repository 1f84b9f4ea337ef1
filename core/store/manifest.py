"""The manifest written next to every artifact: what it is, where it came from, how to check it.

A manifest is small JSON: sha256 and size of the artifact file, when it was made, the plugin
distribution and version that defines the model, the library versions it was made with, and
(when a signing key was set) the HMAC signature over all of that.
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from ..errors import ArtifactVerificationError, StoreError
from ..names import MODEL_NAME_PATTERN
from .uri import EXTENSIONS, implied_format

FORMAT_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LIBRARIES = ("modeldeploy", "transformers", "torch", "tokenizers", "dill")


@dataclass(frozen=True)
class Manifest:
    name: str
    format: str
    sha256: str
    size: int
    created: str
    plugin: dict[str, str | None] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    key_id: str | None = None
    signature: str | None = None

    def signed_payload(self) -> bytes:
        """Canonical bytes the signature covers: every field except the signature itself."""
        fields = asdict(self)
        fields.pop("signature")
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode() + b"\n"

    def with_signature(self, key_id: str | None, signature: str | None) -> "Manifest":
        return replace(self, key_id=key_id, signature=signature)

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "Manifest":
        """Parse and validate; anything odd is a verification error naming ``where``."""
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactVerificationError(f"manifest {where} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ArtifactVerificationError(f"manifest {where} must be a JSON object")
        expected = set(cls.__dataclass_fields__)
        if set(raw) != expected:
            raise ArtifactVerificationError(
                f"manifest {where} has keys {sorted(raw)}; expected exactly {sorted(expected)}"
            )
        checks = {
            "name": lambda v: isinstance(v, str) and MODEL_NAME_PATTERN.match(v),
            "format": lambda v: v in EXTENSIONS,
            "sha256": lambda v: isinstance(v, str) and _SHA256.match(v),
            "size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "created": lambda v: isinstance(v, str),
            "plugin": lambda v: isinstance(v, dict),
            "versions": lambda v: isinstance(v, dict),
            "format_version": lambda v: v == FORMAT_VERSION,
            "key_id": lambda v: v is None or isinstance(v, str),
            "signature": lambda v: v is None or isinstance(v, str),
        }
        for key, check in checks.items():
            if not check(raw[key]):
                raise ArtifactVerificationError(f"manifest {where}: invalid {key} {raw[key]!r}")
        return cls(**raw)


def build_manifest(
    name: str,
    format: str,
    sha256: str,
    size: int,
    distribution: str | None = None,
    version: str | None = None,
    created: datetime | None = None,
) -> Manifest:
    """A fresh, unsigned manifest for an artifact file of ``size`` bytes hashing to ``sha256``."""
    moment = (created or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return Manifest(
        name=name,
        format=format,
        sha256=sha256,
        size=size,
        created=moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        plugin={"distribution": distribution, "version": version},
        versions=runtime_versions(),
    )


def check_identity(manifest: Manifest, filename: str, where: str, expected_name: str | None) -> None:
    """The manifest must describe the model asked for and the format the file is named as (if any)."""
    if expected_name is not None and manifest.name != expected_name:
        raise ArtifactVerificationError(
            f"manifest {where} describes an artifact of model {manifest.name!r}, not {expected_name!r} "
            "(swapped manifest?)"
        )
    implied = implied_format(filename)
    if implied is not None and implied != manifest.format:
        raise ArtifactVerificationError(
            f"manifest {where} describes a {manifest.format} artifact, but {filename!r} is named as a "
            f"{implied} one (swapped manifest?)"
        )


def artifact_format_of(filename: str, manifest: Manifest | None) -> str:
    """The artifact's format: its manifest's, or for a file without one, its extension's."""
    if manifest is not None:
        return manifest.format
    implied = implied_format(filename)
    if implied is None:
        known = " or ".join(EXTENSIONS.values())
        raise StoreError(f"cannot tell what {filename!r} holds: it has no manifest and its name does not end in {known}")
    return implied


def runtime_versions() -> dict[str, Any]:
    """Library versions an artifact was made with (a dill artifact needs compatible ones to load)."""
    versions: dict[str, Any] = {"python": platform.python_version()}
    for library in _LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = None
    return versions
