"""Who a sale is about: the person's keys and what the ledger knows of them.

Each sale's address is checked exactly once, here; the rules get the result (they never
validate it again), so does the renderer for the sales that become requests (``Eligible``
carries the accepted address), and the keys are derived from it: the email key first (a
person across every store sharing the ledger), then the POS customer key (this store's
record).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from surveysync.addresses import AcceptedAddress, accept
from surveysync.ledger import CooldownRow, Ledger
from surveysync.model import Sale, SaleRef
from surveysync.rules import PersonHistory


@dataclass(slots=True)
class ChunkFacts:
    """Per chunk: what the ledger knows about the people in it, read in a few queries."""

    emails: dict[SaleRef, str | None]  # sale -> normalized email (None: none or invalid)
    addresses: dict[SaleRef, AcceptedAddress]  # sale -> its address as accepted, if valid
    keys: dict[SaleRef, tuple[str, ...]]  # sale -> person keys (email key first)
    cooldowns: dict[str, CooldownRow]
    suppressed: set[str]  # person and transaction keys


@dataclass(frozen=True, slots=True)
class Eligible:
    """A sale that passed every rule, waiting for the day's choice: only what its claim needs,
    so that a busy day does not keep every chunk's facts alive."""

    sale: Sale
    keys: tuple[str, ...]
    email: str  # normalized
    address: AcceptedAddress  # ``sale.email`` as the rules accepted it: what is sent to
    seen: dict[str, str | None]  # person key -> request holding its cooldown when decided


class People:
    """Person facts for one run. ``asked_not_reached`` remembers people this run asked but
    whose email was refused: their older sales in the run are still ``duplicate_in_run``."""

    def __init__(self, ledger: Ledger, run_id: str) -> None:
        self._ledger = ledger
        self._run_id = run_id
        self.asked_not_reached: set[str] = set()

    def facts(self, sales: Sequence[Sale]) -> ChunkFacts:
        emails: dict[SaleRef, str | None] = {}
        addresses: dict[SaleRef, AcceptedAddress] = {}
        keys: dict[SaleRef, tuple[str, ...]] = {}
        for sale in sales:
            address = accepted(sale.email)
            email = address.matched_as if address else None
            if address:
                addresses[sale.ref] = address
            emails[sale.ref] = email
            keys[sale.ref] = self._person_keys(sale, email)
        tx_keys = [self._ledger.keys.transaction(s.transaction_id) for s in sales]
        cooldowns, suppressed = self._ledger.claims.known_about(
            [k for ks in keys.values() for k in ks], tx_keys
        )
        return ChunkFacts(emails, addresses, keys, cooldowns, suppressed)

    def history(self, sale: Sale, facts: ChunkFacts) -> PersonHistory:
        keys = facts.keys[sale.ref]
        holders = [facts.cooldowns[k] for k in keys if k in facts.cooldowns]
        earlier = [h.last_request_at for h in holders if h.run_id != self._run_id]
        return PersonHistory(
            last_request_at=max(earlier) if earlier else None,
            asked_in_this_run=any(h.run_id == self._run_id for h in holders)
            or any(k in self.asked_not_reached for k in keys),
            suppressed=any(k in facts.suppressed for k in keys),
            transaction_suppressed=(
                self._ledger.keys.transaction(sale.transaction_id) in facts.suppressed
            ),
            email=facts.emails[sale.ref],
        )

    def eligible(self, sale: Sale, facts: ChunkFacts) -> Eligible:
        keys = facts.keys[sale.ref]
        seen = {k: facts.cooldowns[k].request_id if k in facts.cooldowns else None for k in keys}
        address = facts.addresses[sale.ref]  # an eligible sale has a valid address
        return Eligible(sale, keys, address.matched_as, address, seen)

    def _person_keys(self, sale: Sale, email: str | None) -> tuple[str, ...]:
        keys: list[str] = []
        if email:
            keys.append(self._ledger.keys.email(email))
        if sale.customer_id:
            keys.append(self._ledger.keys.customer(sale.customer_id))
        return tuple(keys)


def normalized(raw: str | None) -> str | None:
    """The address people are matched by, or None when there is none or it is not valid
    (spaces or line breaks around an address make it invalid, never trimmed away)."""
    address = accepted(raw)
    return address.matched_as if address else None


def accepted(raw: str | None) -> AcceptedAddress | None:
    """``raw`` as ``surveysync.addresses`` accepts it, or None when it is not an address."""
    if not raw or not raw.strip():
        return None
    try:
        return accept(raw)
    except ValueError:  # InvalidAddress, or input the validator cannot even read
        return None


def email_key(keys: Iterable[str]) -> str | None:
    return next((k for k in keys if k.startswith("e:")), None)


def person_tag(keys: Iterable[str]) -> str | None:
    """What log events name a person by: the start of their email key (a keyed hash, so the
    logs never hold the address), which ``surveysync logs --email`` computes alike."""
    key = email_key(keys)
    return key[2:14] if key else None
