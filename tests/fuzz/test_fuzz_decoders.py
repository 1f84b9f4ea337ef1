"""The decoder fuzzer as a test: replay the regression corpus, and run a short bounded campaign.

Longer campaigns: see ``fuzz_decoders.py``. Findings are copied into ``corpus/`` once fixed, so
the replay keeps them fixed without atheris.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from decoders_target import GENERATED_SEEDS, check

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda path: path.name)
def test_corpus_input_is_refused_cleanly_or_decoded(path: Path) -> None:
    check(path.read_bytes())


@pytest.mark.parametrize("name", sorted(GENERATED_SEEDS))
def test_generated_seed_is_refused_cleanly_or_decoded(name: str) -> None:
    check(GENERATED_SEEDS[name])


def test_short_fuzzing_campaign_finds_nothing(tmp_path: Path) -> None:
    """A few thousand coverage-guided inputs (about a second; atheris exits, hence the subprocess)."""
    pytest.importorskip("atheris")
    found = tmp_path / "found"
    found.mkdir()
    command = [sys.executable, str(HERE / "fuzz_decoders.py"), str(tmp_path), str(CORPUS),
               f"-dict={HERE / 'decoders.dict'}", "-runs=4000", "-seed=1", "-max_len=8192",
               f"-artifact_prefix={found}/"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done 4000 runs" in result.stderr
    assert not list(found.iterdir()), result.stderr[-4000:]
