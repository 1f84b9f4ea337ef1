"""``modeldeploy export | push | pull | history``: artifacts in a local folder or a GCS bucket."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tqdm import tqdm

from .. import loading, store
from ..store.uri import EXTENSIONS, split_artifact_uri


def add_commands(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="serialize a loaded model into an artifact file (+ manifest)")
    export.add_argument("name", help="model name (see 'modeldeploy list')")
    export.add_argument("--output", required=True, type=Path, help="artifact file: NAME.dill or NAME.pretrained.tar")
    _model_options(export)
    export.set_defaults(func=run_export)

    push = sub.add_parser("push", help="upload an artifact (or export a model and upload it) to a store")
    push.add_argument("artifact", metavar="FILE_OR_NAME", help="an artifact file, or a model name to export first")
    push.add_argument("destination", metavar="DEST", help="./models, file:///srv/models or gs://bucket/prefix")
    _model_options(push)
    push.set_defaults(func=run_push)

    pull = sub.add_parser("pull", help="download and verify an artifact (+ manifest)")
    pull.add_argument("uri", help="e.g. gs://bucket/prefix/sentiment.dill or .../historic/<ts>_sentiment.dill")
    pull.add_argument("--output", required=True,
                      help="file to write, or folder (an existing one, or any path ending in '/', created if needed)")
    pull.add_argument("--sha256", help="accept exactly these bytes (as a config's sha256 would)")
    pull.add_argument("--trust-unsigned", action="store_true", help="accept an artifact that cannot be verified")
    pull.set_defaults(func=run_pull)

    history = sub.add_parser("history", help="list the pushed versions of a model, newest first")
    history.add_argument("name", help="model name")
    history.add_argument("--store", required=True, help="./models, file:///srv/models or gs://bucket/prefix")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    history.set_defaults(func=run_history)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="hub id or local folder to load the model from")
    parser.add_argument("--format", choices=sorted(EXTENSIONS), default="dill",
                        help="dill (the loaded wrapper) or pretrained (safetensors, no pickle); default dill")
    parser.add_argument("--device", default="cpu", help="device to load on before export (default cpu)")


def _progress(description: str, total: int | None) -> tqdm:
    """A byte progress bar on stderr (hidden when stderr is not a terminal)."""
    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, disable=None)


def _export(args: argparse.Namespace, output: Path) -> store.Manifest:
    store.check_export_target(output, args.format)
    wrapper = loading.load(args.name, source=args.source, device=args.device)
    return loading.export(wrapper, output, args.format)


def run_export(args: argparse.Namespace) -> int:
    manifest = _export(args, args.output)
    signed = f"signed (key id {manifest.key_id})" if manifest.signature else "UNSIGNED (set MODELDEPLOY_SIGNING_KEY)"
    print(f"exported {args.name} to {args.output} ({manifest.size} bytes, sha256 {manifest.sha256}, {signed})")
    return 0


def run_push(args: argparse.Namespace) -> int:
    path = Path(args.artifact)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-push-") as folder:
        if not path.is_file():
            path = Path(folder) / f"{args.artifact}{EXTENSIONS[args.format]}"
            args.name = args.artifact
            _export(args, path)
        with _progress(f"push {path.name}", path.stat().st_size) as bar:
            result = store.push(path, args.destination, on_bytes=bar.update)
    print(f"pushed {result.history_uri}")
    print(f"current {result.current_uri} (sha256 {result.manifest.sha256})")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    store_uri, filename = split_artifact_uri(args.uri)
    output = pull_destination(args.output, filename)
    source = store.open_store(store_uri)
    policy = store.TrustPolicy(args.sha256.lower() if args.sha256 else None, args.trust_unsigned)
    with _progress(f"pull {filename}", source.size(store.resolve(source, filename))) as bar:
        artifact = store.fetch(source, filename, output, policy, on_bytes=bar.update)
    print(f"pulled {args.uri} to {artifact.path} (sha256 {artifact.sha256}, {artifact.verification})")
    return 0


def pull_destination(output: str, filename: str) -> Path:
    """``--output`` as a file path: a folder (existing, or written with a trailing ``/``) gets the
    artifact's own file name; any other path is the file, whatever its name."""
    if output.endswith(("/", "\\")) or Path(output).is_dir():
        return Path(output) / filename
    return Path(output)


def run_history(args: argparse.Namespace) -> int:
    versions = store.history(args.name, args.store)
    if args.json:
        print(json.dumps([
            {"timestamp": v.timestamp, "uri": v.uri, "format": v.format, "current": v.current,
             "signature": v.signature, "sha256": v.manifest.sha256 if v.manifest else None,
             "size": v.manifest.size if v.manifest else None}
            for v in versions
        ], indent=2))
        return 0
    if not versions:
        print(f"no versions of {args.name!r} in {args.store}")
    for v in versions:
        sha = v.manifest.sha256[:12] if v.manifest else "-"
        print(f"{'*' if v.current else ' '} {v.timestamp}  {v.format:10}  {sha:12}  {v.signature:11}  {v.uri}")
    return 0
