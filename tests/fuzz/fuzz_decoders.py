"""Coverage-guided fuzzing (atheris, i.e. libFuzzer for Python) of the request decoders.

Each input goes through ``decoders_target.check``: ``decode_json``, ``normalize_texts``, and the
OIP codec both ways. Only ``modeldeploy`` is instrumented, so coverage means our decoders' branches.

A campaign (new interesting inputs go to the first folder, which also gets the seeds built in
code, ``decoders_target.GENERATED_SEEDS``; seeds and past findings in ``tests/fuzz/corpus`` are
read, not written; a finding is written as ``found-crash-<sha1>``)::

    mkdir -p /tmp/fuzz-corpus /tmp/fuzz-found
    nice -n 10 .venv/bin/python tests/fuzz/fuzz_decoders.py /tmp/fuzz-corpus tests/fuzz/corpus \\
        -dict=tests/fuzz/decoders.dict -max_len=8192 -max_total_time=600 \\
        -artifact_prefix=/tmp/fuzz-found/ -print_final_stats=1

Keep every finding: fix it, then copy the file into ``tests/fuzz/corpus/`` under a name that
says what it is; ``test_fuzz_decoders.py`` replays that folder on every test run (no atheris
needed) and runs a short bounded campaign of this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parent))  # decoders_target, when run as a script

with atheris.instrument_imports(include=["modeldeploy", "decoders_target"]):
    from decoders_target import GENERATED_SEEDS, check


def main() -> None:
    folders = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if folders:  # the writable corpus folder starts with the seeds that are built, not stored
        for name, data in GENERATED_SEEDS.items():
            (Path(folders[0]) / name).write_bytes(data)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
