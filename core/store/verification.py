"""The trust decision, made on file bytes before anything is unpickled or extracted.

An artifact is *verified* when its sha256 matches one pinned in config.yaml, or when its manifest
carries a valid HMAC signature and the artifact matches that manifest. Evidence of tampering (a
size or hash that disagrees with the manifest, a bad signature, a pinned hash that differs) is
always refused. An artifact that is merely *unverifiable* (no manifest, unsigned, or signed with
a key this process does not have) is refused unless the model opts in with
``trust_unsigned: true``, which logs a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import ArtifactVerificationError
from .manifest import Manifest
from .signing import PREVIOUS_KEYS_ENV, SIGNING_KEY_ENV, signature_status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrustPolicy:
    """What a model's config says about trusting its artifact."""

    sha256: str | None = None
    trust_unsigned: bool = False


def verify(label: str, manifest: Manifest | None, sha256: str, size: int, policy: TrustPolicy) -> str:
    """Say how the artifact ``label`` with these bytes is trusted ("verified by signature (key id
    ...)", "verified by pinned sha256", "NOT verified: ..."), or raise ArtifactVerificationError."""

    def refuse(reason: str) -> ArtifactVerificationError:
        return ArtifactVerificationError(f"refusing artifact {label}: {reason}")

    status = None
    if manifest is not None:
        if size != manifest.size:
            raise refuse(f"it is {size} bytes but its manifest says {manifest.size} (truncated or replaced)")
        if sha256 != manifest.sha256:
            raise refuse(
                f"its sha256 {sha256} does not match its manifest's {manifest.sha256} "
                "(modified, or the manifest belongs to another artifact)"
            )
        status = signature_status(manifest)
        if status == "invalid":
            raise refuse(f"the manifest's signature (key id {manifest.key_id}) is invalid: the manifest was altered")
    if policy.sha256 is not None:
        if sha256 != policy.sha256:
            raise refuse(f"its sha256 {sha256} differs from the sha256 pinned in config ({policy.sha256})")
        return "verified by pinned sha256"
    if status == "valid":
        return f"verified by signature (key id {manifest.key_id})"
    if manifest is None:
        why = "it has no manifest"
    elif status == "unsigned":
        why = "it is unsigned"
    else:
        why = (f"it is signed with key id {manifest.key_id}, which is not configured here "
               f"(set {SIGNING_KEY_ENV} or {PREVIOUS_KEYS_ENV})")
    if not policy.trust_unsigned:
        raise refuse(
            f"{why} and no sha256 is pinned; sign it with {SIGNING_KEY_ENV}, pin its sha256 (sha256: in "
            "config.yaml, --sha256 on the command line), or accept it unverified (trust_unsigned: true, "
            "--trust-unsigned)"
        )
    log.warning("loading UNVERIFIED artifact %s (%s) because trust_unsigned is true", label, why)
    return f"NOT verified ({why}; accepted because trust_unsigned is set)"
