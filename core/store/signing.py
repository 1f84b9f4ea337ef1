"""HMAC-SHA256 signatures over manifests, keyed by ``MODELDEPLOY_SIGNING_KEY``.

The signature covers the manifest (which holds the artifact's sha256), so one check proves both
who made the artifact and that its bytes are intact. ``MODELDEPLOY_PREVIOUS_SIGNING_KEYS``
(comma-separated) are accepted for verification only, which lets a key be rotated without
re-signing every artifact at once. Each signature records a ``key_id`` (a hash of the key, not
the key) so a refusal can say which key an artifact needs.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from ..errors import ConfigError
from .manifest import Manifest

SIGNING_KEY_ENV = "MODELDEPLOY_SIGNING_KEY"
PREVIOUS_KEYS_ENV = "MODELDEPLOY_PREVIOUS_SIGNING_KEYS"
MIN_KEY_LENGTH = 16


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"modeldeploy-signing-key:" + key).hexdigest()[:16]


def _key(text: str, variable: str) -> bytes:
    if len(text) < MIN_KEY_LENGTH:
        raise ConfigError(f"{variable} must be at least {MIN_KEY_LENGTH} characters long")
    return text.encode()


def current_key() -> bytes | None:
    """The key new signatures use, or None when signing is not configured."""
    text = os.environ.get(SIGNING_KEY_ENV, "")
    return _key(text, SIGNING_KEY_ENV) if text else None


def verification_keys() -> dict[str, bytes]:
    """key_id -> key for the current key and every previous one."""
    keys = [current_key()] + [
        _key(part.strip(), PREVIOUS_KEYS_ENV)
        for part in os.environ.get(PREVIOUS_KEYS_ENV, "").split(",")
        if part.strip()
    ]
    return {key_id(key): key for key in keys if key is not None}


def _mac(key: bytes, manifest: Manifest) -> str:
    return hmac.new(key, manifest.signed_payload(), hashlib.sha256).hexdigest()


def sign(manifest: Manifest) -> Manifest:
    """The manifest signed with the current key (unchanged and unsigned when no key is set)."""
    key = current_key()
    if key is None:
        return manifest.with_signature(None, None)
    unsigned = manifest.with_signature(key_id(key), None)
    return unsigned.with_signature(unsigned.key_id, _mac(key, unsigned))


def signature_status(manifest: Manifest) -> str:
    """``valid``, ``invalid``, ``unsigned`` or ``unknown-key`` (signed by a key not configured here)."""
    if manifest.signature is None:
        return "unsigned"
    key = verification_keys().get(manifest.key_id or "")
    if key is None:
        return "unknown-key"
    return "valid" if hmac.compare_digest(_mac(key, manifest), manifest.signature) else "invalid"
