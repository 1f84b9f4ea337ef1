"""Where artifacts live: store URIs (``./models``, ``file:///srv/models``, ``gs://bucket/prefix``),
artifact file names, and the checks that keep every name inside its store or cache folder.

Object keys and URI path segments are restricted to ``[A-Za-z0-9_][A-Za-z0-9._-]*``: no ``..``,
no absolute paths, no backslashes, no empty segments. Names come from configs, manifests and
bucket listings, so a crafted name must never reach outside the prefix it was read from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError

#: Artifact formats and the file-name extension each one uses.
EXTENSIONS = {"dill": ".dill", "pretrained": ".pretrained.tar"}
#: What replaces the extension to name an artifact's manifest (distinct per format, so both
#: formats of one model can live side by side; the dill one keeps the seed's plain name).
MANIFEST_EXTENSIONS = {"dill": ".manifest.json", "pretrained": ".pretrained.manifest.json"}
HISTORY_FOLDER = "historic"

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$")


@dataclass(frozen=True)
class StoreURI:
    """A parsed store location: a local folder (``file``) or a bucket and prefix (``gs``)."""

    scheme: str
    location: str  # absolute folder for "file", bucket name for "gs"
    prefix: str = ""  # "a/b" inside the bucket ("" for the bucket root); unused for "file"

    def __str__(self) -> str:
        if self.scheme == "gs":
            return f"gs://{self.location}/{self.prefix}".rstrip("/")
        return Path(self.location).as_uri()

    def child(self, key: str) -> str:
        """The URI of ``key`` inside this store (what a config's ``source:`` would name)."""
        return f"{self}/{check_key(key)}"


def check_key(key: str) -> str:
    """Return ``key`` if every ``/``-separated segment is a safe name, else raise StoreError."""
    if not isinstance(key, str) or not key:
        raise StoreError(f"artifact name {key!r} is empty or not a string")
    for segment in key.split("/"):
        if not _SEGMENT.match(segment):
            raise StoreError(
                f"unsafe artifact name {key!r}: segment {segment!r} is not allowed "
                "(names use letters, digits, '.', '_' and '-', with no '..', no absolute path, no empty part)"
            )
    return key


def parse_store_uri(text: str) -> StoreURI:
    """``./dir``, ``/abs/dir``, ``file:///abs/dir`` or ``gs://bucket[/prefix]`` -> StoreURI."""
    if not isinstance(text, str) or not text.strip():
        raise StoreError("a store URI must be a non-empty string such as ./models or gs://bucket/prefix")
    if text.startswith("gs://"):
        bucket, _, prefix = text[len("gs://"):].partition("/")
        if not _BUCKET.match(bucket):
            raise StoreError(f"invalid bucket name {bucket!r} in {text!r}")
        prefix = prefix[:-1] if prefix.endswith("/") else prefix
        if prefix:
            check_key(prefix)
        return StoreURI("gs", bucket, prefix)
    if "://" in text:
        if not text.startswith("file://"):
            raise StoreError(f"unsupported store URI {text!r}; use a folder, file:///path or gs://bucket/prefix")
        text = text[len("file://"):]
        if not text.startswith("/"):
            raise StoreError("a file:// URI needs an absolute path (file:///srv/models)")
    parts = Path(text).parts
    if ".." in parts:
        raise StoreError(f"store path {text!r} must not contain '..'")
    return StoreURI("file", str(Path(text).expanduser().absolute()))


def split_artifact_uri(text: str) -> tuple[StoreURI, str]:
    """An artifact URI or path -> (the store holding it, its file name inside that store).

    Objects in a store (``gs://``, ``file://``) carry the names ``push`` gives them
    (``<model>.dill``, ``<model>.pretrained.tar``); a local file may have any safe name (a
    ``pull --output`` copy): what an artifact holds is read from its manifest either way.
    """
    if not isinstance(text, str):
        raise StoreError(f"artifact source must be a string, got {type(text).__name__}")
    folder, _, filename = text.rstrip().rpartition("/")
    if text.startswith("gs://") and folder == "gs:/":
        raise StoreError(f"artifact URI {text!r} names a bucket, not an artifact file")
    if folder.endswith("/") and not folder.endswith(":/"):
        raise StoreError(f"artifact URI {text!r} has an empty path segment ('//')")
    check_key(filename)
    if "://" in text:
        artifact_format(filename)
    if not folder:
        folder = "/" if text.startswith("/") else "."
    return parse_store_uri(folder), filename


def implied_format(filename: str) -> str | None:
    """The format an artifact file name's extension implies, or None when it implies none."""
    for format_name, extension in EXTENSIONS.items():
        if filename.endswith(extension) and len(filename) > len(extension):
            return format_name
    return None


def artifact_format(filename: str) -> str:
    """The format a file name implies (``dill`` or ``pretrained``); a StoreError when none."""
    format_name = implied_format(filename)
    if format_name is None:
        known = ", ".join(EXTENSIONS.values())
        raise StoreError(f"{filename!r} is not an artifact file name (expected one ending in {known})")
    return format_name


def stem(filename: str) -> str:
    """``sentiment.dill`` -> ``sentiment``; ``<ts>_sentiment.pretrained.tar`` -> ``<ts>_sentiment``."""
    return filename[: -len(EXTENSIONS[artifact_format(filename)])]


def manifest_name(filename: str) -> str:
    """The manifest beside an artifact: ``sentiment.dill`` -> ``sentiment.manifest.json``,
    ``sentiment.pretrained.tar`` -> ``sentiment.pretrained.manifest.json``, and for any other
    file name ``pulled.bin`` -> ``pulled.bin.manifest.json``."""
    format_name = implied_format(filename)
    if format_name is None:
        return filename + MANIFEST_EXTENSIONS["dill"]
    return stem(filename) + MANIFEST_EXTENSIONS[format_name]


def is_artifact_source(source: str | None) -> bool:
    """Whether a model ``source`` names a store artifact rather than a hub id or a model folder:
    a ``gs://`` or ``file://`` URI, an artifact file name, or any existing file (a hub id or a
    model folder never is one)."""
    if not source:
        return False
    if source.startswith(("gs://", "file://")):
        return True
    return implied_format(source) is not None or Path(source).expanduser().is_file()
