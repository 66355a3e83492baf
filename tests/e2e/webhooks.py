"""Standard Webhooks verification, written from the specification
(https://www.standardwebhooks.com/): the signature is
"v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), where key is
the base64-decoded part of the secret after "whsec_", and the header may
carry several space-separated signatures (during a secret rotation)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    assert secret.startswith("whsec_"), secret
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """True when one of the v1 signatures in webhook-signature matches and
    webhook-timestamp is within tolerance of now. headers: lower-case names."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not (msg_id and ts and sigs) or not ts.isdigit():
        return False
    if abs(time.time() - int(ts)) > tolerance_s:
        return False
    want = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(s, want) for s in sigs.split(" ") if s.startswith("v1,"))

