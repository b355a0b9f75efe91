"""How the ledger names people without keeping their addresses: keyed hashes.

``e:<HMAC-SHA256(secret, normalized email)>`` names a person across every store sharing the
ledger (one unsubscribe holds for all); ``c:<store>:<customer id>`` names a POS customer
record, which only means something inside its own store.
"""

from __future__ import annotations

import hmac


class PersonKeys:
    def __init__(self, secret: bytes, store: str) -> None:
        self._secret = secret
        self._store = store

    def email(self, normalized_email: str) -> str:
        return "e:" + hmac.digest(self._secret, normalized_email.encode("utf-8"), "sha256").hex()

    def customer(self, customer_id: str, store: str | None = None) -> str:
        return f"c:{store or self._store}:{customer_id}"

    def transaction(self, transaction_id: str, store: str | None = None) -> str:
        return f"t:{store or self._store}:{transaction_id}"


def mask_email(address: str) -> str:
    """``j***@example.com``: enough for support to recognise, never the whole address."""
    local, _, domain = address.rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"
