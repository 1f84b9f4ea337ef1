"""Peak memory of pushing and pulling a large artifact (local folder store and GCS emulator).

Each push or pull runs in a fresh Python process that imports the store first, then records
``ru_maxrss`` before and after the transfer, so the figure is what the transfer itself adds on
top of the interpreter and libraries. The artifact is random bytes with a manifest: push/pull
stream bytes and do not care what they are.

    .venv/bin/python bench/store_memory.py [--mb 500] [--output bench/results-store.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "store"))

from gcs_emulator import Emulator  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from modeldeploy import store
from modeldeploy.store.uri import split_artifact_uri
action, artifact, target = sys.argv[1:4]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if action == "push":
    store.push(Path(artifact), target)
else:
    store_uri, filename = split_artifact_uri(artifact)
    store.fetch(store.open_store(store_uri), filename, Path(target), store.TrustPolicy(trust_unsigned=True))
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_mib": before / 1024, "peak_mib": after / 1024, "seconds": seconds}))
"""

NOTES = """Reading: the artifact is never held in memory. Local copies move 1 MiB chunks; GCS uploads
are resumable with 8 MiB chunks (`UPLOAD_CHUNK_BYTES`) and downloads stream into a hashing
writer. The GCS rows' extra MiB include importing google-cloud-storage, which happens on first
use. Push time against the emulator reflects fake-gcs-server handling ~63 resumable chunks on
this 2-core machine; it says nothing about real GCS throughput.
"""


def make_artifact(folder: Path, megabytes: int) -> Path:
    from modeldeploy.store.manifest import build_manifest
    from modeldeploy.store.streams import sha256_file

    path = folder / "sentiment.dill"
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1024 * 1024))
    sha256, size = sha256_file(path)
    (folder / "sentiment.manifest.json").write_bytes(build_manifest("sentiment", "dill", sha256, size).to_json())
    return path


def measure(action: str, artifact: str, target: str, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, action, artifact, target], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=500, help="artifact size in MiB (default 500)")
    parser.add_argument("--output", type=Path, help="write a Markdown results file here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="store-bench-") as scratch:
        scratch = Path(scratch)
        artifact = make_artifact(scratch, args.mb)
        emulator = Emulator(scratch / "gcs", backend="filesystem").start()
        try:
            env = {**os.environ, "STORAGE_EMULATOR_HOST": emulator.url}
            env.pop("MODELDEPLOY_SIGNING_KEY", None)
            from google.cloud import storage

            os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
            storage.Client().create_bucket("bench")
            for label, destination in (("local folder", str(scratch / "store")), ("GCS emulator", "gs://bench/m")):
                rows.append((label, "push", measure("push", str(artifact), destination, env)))
                pulled = scratch / f"pulled-{len(rows)}" / "sentiment.dill"
                rows.append((label, "pull", measure("pull", f"{destination}/sentiment.dill", str(pulled), env)))
                assert pulled.stat().st_size == artifact.stat().st_size
        finally:
            emulator.stop()
    header = "| store | operation | baseline RSS (MiB) | peak RSS (MiB) | added by transfer (MiB) | seconds |"
    lines = [header, "|---|---|---|---|---|---|"]
    for label, action, r in rows:
        lines.append(f"| {label} | {action} | {r['baseline_mib']:.0f} | {r['peak_mib']:.0f} | "
                     f"{r['peak_mib'] - r['baseline_mib']:.0f} | {r['seconds']:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(
            f"# Store: peak memory of push and pull\n\n"
            f"Artifact: {args.mb} MiB of random bytes with a manifest. Taken {time.strftime('%Y-%m-%d')} with\n"
            f"`.venv/bin/python bench/store_memory.py --mb {args.mb} --output bench/results-store.md`\n"
            f"(each operation in a fresh process; `ru_maxrss` after importing the store = baseline,\n"
            f"after the transfer = peak; GCS = fake-gcs-server, filesystem backend, on 127.0.0.1).\n\n"
            f"{table}\n\n{NOTES}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
