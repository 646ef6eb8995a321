"""Signed requests: API key, timestamp and recvWindow, HMAC-SHA256 signature (Binance's rules).

How it works
- The key travels in the X-MBX-APIKEY header: missing or malformed is -2014, unknown
  -2015 (HTTP 401). Keys and secrets come from the serve config ([[account]] api_key,
  secret; the demo writes them to demo-keys.json).
- `timestamp` (ms) is mandatory; `recvWindow` defaults to 5000 and may not exceed
  60000 (-1131). A request is accepted when timestamp < now + 1000 and
  now - timestamp <= recvWindow, else -1021.
- The signature is the hex HMAC-SHA256, keyed by the secret, of the query string
  followed by the body (both as sent, still percent-encoded, each without its
  `signature=` parameter): Binance's `totalParams`. Either placement works, and a
  mix. A mismatch is -1022. The WebSocket API signs its params sorted by name
  (`sign_ws`), as Binance's WebSocket API does.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from microex.binance import errors as E
from microex.binance.params import Params

MAX_RECV_WINDOW = 60_000
DEFAULT_RECV_WINDOW = 5_000
AHEAD_MS = 1_000


@dataclass(frozen=True)
class Key:
    api_key: str
    secret: str
    account: int


def _strip_signature(raw: str) -> tuple[str, str | None]:
    if "signature=" not in raw:
        return raw, None
    keep, sig = [], None
    for part in raw.split("&"):
        if part.startswith("signature="):
            sig = part[len("signature="):]
        else:
            keep.append(part)
    return "&".join(keep), sig


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class Auth:
    def __init__(self, keys: list[Key], clock=time.time) -> None:
        self.keys = {k.api_key: k for k in keys}
        self.clock = clock

    def key(self, api_key: str | None) -> Key:
        if not api_key:
            raise E.ApiError(E.BAD_API_KEY_FMT, "API-key format invalid.")
        k = self.keys.get(api_key)
        if k is None:
            raise E.ApiError(E.REJECTED_MBX_KEY, "Invalid API-key, IP, or permissions for action.")
        return k

    def check_time(self, p: Params) -> None:
        ts = p.int("timestamp", required=True)
        window = p.int("recvWindow", default=DEFAULT_RECV_WINDOW)
        if window <= 0 or window > MAX_RECV_WINDOW:
            raise E.ApiError(E.BAD_RECV_WINDOW, "recvWindow must be less than 60000")
        now = int(self.clock() * 1000)
        if ts >= now + AHEAD_MS:
            raise E.ApiError(E.INVALID_TIMESTAMP, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > window:
            raise E.ApiError(E.INVALID_TIMESTAMP, "Timestamp for this request is outside of the recvWindow.")

    def signed(self, api_key: str | None, p: Params) -> Key:
        """Check a signed REST request; the key (and so the account) it is signed with."""
        key = self.key(api_key)
        query, sig_q = _strip_signature(p.raw_query)
        body, sig_b = _strip_signature(p.raw_body)
        sig = sig_q or sig_b
        if not sig:
            raise E.mandatory("signature")
        self.check_time(p)
        want = hmac_hex(key.secret, query + body)
        ok = hmac.compare_digest(want, sig.lower())
        if not ok and query and body:  # a client that joined the two parts with '&'
            ok = hmac.compare_digest(hmac_hex(key.secret, query + "&" + body), sig.lower())
        if not ok:
            raise E.ApiError(E.INVALID_SIGNATURE, "Signature for this request is not valid.")
        return key

    def sign_ws(self, params: dict) -> Key:
        """A WebSocket API request's params (apiKey, timestamp, signature...): the key it is signed with."""
        if not isinstance(params, dict):
            raise E.mandatory("params")
        key = self.key(params.get("apiKey") if isinstance(params.get("apiKey"), str) else None)
        sig = params.get("signature")
        if not isinstance(sig, str) or not sig:
            raise E.mandatory("signature")
        values = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items()
                  if k != "signature"}
        self.check_time(Params(values))
        payload = "&".join(f"{k}={values[k]}" for k in sorted(values))
        if not hmac.compare_digest(hmac_hex(key.secret, payload), sig.lower()):
            raise E.ApiError(E.INVALID_SIGNATURE, "Signature for this request is not valid.")
        return key
