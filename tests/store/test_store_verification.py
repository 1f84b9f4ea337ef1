"""The trust model: a dill artifact is code, so nothing is unpickled before its bytes are verified.

The malicious artifact here creates a marker file when unpickled; every refusal asserts that the
marker does not exist, i.e. nothing was executed.
"""

import json
import logging
import pickle
import shutil
from pathlib import Path

import pytest

from modeldeploy import store
from modeldeploy.loading import load_artifact
from modeldeploy.errors import ArtifactVerificationError, ConfigError, StoreError
from modeldeploy.store.manifest import build_manifest
from modeldeploy.store.signing import PREVIOUS_KEYS_ENV, SIGNING_KEY_ENV, sign
from modeldeploy.store.streams import sha256_file
from modeldeploy.store.uri import manifest_name


class CreatesFile:
    """Unpickling this opens (creates) ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "EXECUTED"


@pytest.fixture
def malicious(tmp_path, marker):
    """A local ``sentiment.dill`` whose unpickling creates ``marker``, with an unsigned manifest."""
    path = tmp_path / "upload" / "sentiment.dill"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(CreatesFile(str(marker))))
    sha256, size = sha256_file(path)
    (path.parent / "sentiment.manifest.json").write_bytes(build_manifest("sentiment", "dill", sha256, size).to_json())
    return path


def load(uri, tmp_path, **options):
    return load_artifact(uri, name="sentiment", cache_dir=tmp_path / "cache", **options)


def stored(pushed):
    """The files of a pushed version in a local store: (artifact, manifest)."""
    artifact = Path(pushed.history_uri.removeprefix("file://"))
    return artifact, artifact.with_name(manifest_name(artifact.name))


def test_the_malicious_payload_is_live_when_signed(malicious, marker, tmp_path, signing_key):
    """Control: a validly signed artifact is trusted and unpickled, so the payload really runs."""
    pushed = store.push(malicious, str(tmp_path / "store"))
    with pytest.raises(StoreError, match="does not hold a loaded ModelWrapper"):
        load(pushed.current_uri, tmp_path)
    assert marker.exists()


def test_unsigned_artifact_is_refused(malicious, marker, tmp_path):
    pushed = store.push(malicious, str(tmp_path / "store"))
    with pytest.raises(ArtifactVerificationError, match=r"refusing artifact .*sentiment\.dill: it is unsigned"):
        load(pushed.current_uri, tmp_path)
    assert not marker.exists()
    assert not list((tmp_path / "cache").rglob("sentiment.dill")), "a refused download must not be cached"


def test_artifact_without_manifest_is_refused(malicious, marker, tmp_path):
    bare = tmp_path / "bare" / "sentiment.dill"
    bare.parent.mkdir()
    shutil.copy(malicious, bare)
    with pytest.raises(ArtifactVerificationError, match="it has no manifest"):
        load(str(bare), tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "append"])
def test_damaged_bytes_are_refused_even_with_trust_unsigned(damage, malicious, marker, tmp_path, signing_key):
    pushed = store.push(malicious, str(tmp_path / "store"))
    target = stored(pushed)[0]
    data = bytearray(target.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[:-3]
    else:
        data += b"."
    target.write_bytes(bytes(data))
    reason = "does not match its manifest" if damage == "flip a byte" else "truncated or replaced"
    with pytest.raises(ArtifactVerificationError, match=reason):
        load(pushed.current_uri, tmp_path, trust_unsigned=True)
    assert not marker.exists()


def test_a_swapped_manifest_is_refused(malicious, marker, tmp_path, signing_key, exported):
    """A valid, signed manifest of another version (or another model) does not vouch for these bytes."""
    good = store.push(exported("sentiment"), str(tmp_path / "store"))
    bad = store.push(malicious, str(tmp_path / "other"))
    shutil.copy(stored(good)[1], stored(bad)[1])
    with pytest.raises(ArtifactVerificationError, match="but its manifest says"):
        load(bad.current_uri, tmp_path)
    ner = store.push(exported("ner"), str(tmp_path / "store"))
    shutil.copy(stored(ner)[1], stored(bad)[1])
    with pytest.raises(ArtifactVerificationError, match="swapped manifest"):
        load(bad.current_uri, tmp_path)
    assert not marker.exists()
    assert good.manifest.sha256 != ner.manifest.sha256


def test_an_edited_manifest_breaks_its_signature(malicious, marker, tmp_path, signing_key, exported):
    """Replace the artifact and fix up the manifest's sha256/size: the signature no longer matches."""
    artifact, manifest_path = stored(store.push(exported("sentiment"), str(tmp_path / "store")))
    shutil.copy(malicious, artifact)
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"], manifest["size"] = sha256_file(malicious)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactVerificationError, match="signature .* is invalid"):
        load(str(tmp_path / "store" / "sentiment.dill"), tmp_path, trust_unsigned=True)
    assert not marker.exists()


def test_a_pinned_sha256_must_match(malicious, marker, tmp_path, signing_key, exported):
    pushed = store.push(malicious, str(tmp_path / "store"))
    other = exported("sentiment")
    with pytest.raises(ArtifactVerificationError, match="differs from the sha256 pinned in config"):
        load(pushed.current_uri, tmp_path, sha256=sha256_file(other)[0], trust_unsigned=True)
    assert not marker.exists()


def test_a_pinned_sha256_verifies_an_unsigned_artifact(tmp_path, exported, reference_predictions):
    path = exported("sentiment")
    wrapper = load(str(path), tmp_path, sha256=sha256_file(path)[0].upper())
    assert wrapper.predict(["I love this movie"]) == reference_predictions["sentiment"][:1]


def test_trust_unsigned_loads_with_a_warning(tmp_path, exported, caplog):
    pushed = store.push(exported("sentiment"), str(tmp_path / "store"))
    with caplog.at_level(logging.WARNING, logger="modeldeploy.store"):
        wrapper = load(pushed.current_uri, tmp_path, trust_unsigned=True)
    assert wrapper.is_loaded
    assert "loading UNVERIFIED artifact" in caplog.text and "sentiment.dill" in caplog.text


def test_key_rotation_previous_keys_still_verify(tmp_path, exported, monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, "old-key-old-key-old-key")
    pushed = store.push(exported("sentiment"), str(tmp_path / "store"))
    monkeypatch.setenv(SIGNING_KEY_ENV, "new-key-new-key-new-key")
    with pytest.raises(ArtifactVerificationError, match="which is not configured here"):
        load(pushed.current_uri, tmp_path)
    monkeypatch.setenv(PREVIOUS_KEYS_ENV, "old-key-old-key-old-key")
    assert load(pushed.current_uri, tmp_path).is_loaded
    # rotation: re-sign each artifact with the new key by pulling and pushing it again
    pulled = tmp_path / "pulled" / "sentiment.dill"
    store.fetch(store.open_store(str(tmp_path / "store")), "sentiment.dill", pulled, store.TrustPolicy())
    assert store.push(pulled, str(tmp_path / "store")).manifest.key_id != pushed.manifest.key_id
    monkeypatch.delenv(PREVIOUS_KEYS_ENV)
    assert load(pushed.current_uri, tmp_path).is_loaded


def test_short_signing_keys_are_refused(monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        sign(build_manifest("sentiment", "dill", "0" * 64, 1))


def test_push_refuses_a_file_that_does_not_match_its_manifest(malicious, tmp_path):
    malicious.write_bytes(malicious.read_bytes() + b"x")
    with pytest.raises(ArtifactVerificationError, match="does not match its manifest"):
        store.push(malicious, str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()
