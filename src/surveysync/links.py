"""What a score or unsubscribe link means: for the survey landing page, and for support.

``verify_link`` answers with the request and the score, or refuses with a stable reason
(``LinkProblem``: tampered, expired, unknown). ``unsubscribe_by_link`` records the
unsubscribe in the ledger, where it holds for every store sharing it. Both accept a whole
link, a bare token, or the subject of a mailto unsubscribe (``unsubscribe-<token>``).

Reads the ledger, never the POS; sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from surveysync.config import EmailSettings
from surveysync.ledger import Ledger
from surveysync.ledger.reports import RequestRow, find_request
from surveysync.render import InvalidLink, LinkProblem, LinkSigner, token_from

log = structlog.get_logger("surveysync.links")


@dataclass(frozen=True, slots=True)
class VerifiedLink:
    request: RequestRow
    score: int | None  # None: an unsubscribe link
    expires_at: datetime
    already_suppressed: bool = False  # set by unsubscribe_by_link

    @property
    def is_unsubscribe(self) -> bool:
        return self.score is None


def link_signer(email: EmailSettings) -> LinkSigner:
    return LinkSigner(email.link_secret.get_secret_value(), timedelta(days=email.link_valid_days))


def verify_link(ledger: Ledger, signer: LinkSigner, link: str, now: datetime) -> VerifiedLink:
    """The request and score a link stands for; InvalidLink says why not."""
    try:
        claim = signer.read(token_from(link), now)
    except InvalidLink as exc:
        log.info("link.refused", problem=exc.problem.value)
        raise
    request = find_request(ledger, claim.request_id)
    if request is None:
        log.info("link.refused", problem=LinkProblem.UNKNOWN.value, request_id=claim.request_id)
        raise InvalidLink(LinkProblem.UNKNOWN, f"no request {claim.request_id} in the ledger")
    return VerifiedLink(request, claim.score, claim.expires_at)


def unsubscribe_by_link(
    ledger: Ledger,
    signer: LinkSigner,
    link: str,
    now: datetime,
    *,
    source: str = "link",
    reason: str | None = None,
) -> VerifiedLink:
    """Never ask this person again, in any store sharing the ledger. ``already_suppressed``
    on the answer says whether they were before.

    Any valid link of the request will do: someone who found the score links but not the
    unsubscribe one still means it.
    """
    verified = verify_link(ledger, signer, link, now)
    request = verified.request
    kind = "email" if request.person_key.startswith("e:") else "customer"
    added = ledger.suppressions.add(
        kind, request.person_key, request.email_masked, source, reason or "unsubscribe link", now
    )
    log.info(
        "link.unsubscribed",
        request_id=request.request_id,
        request_store=request.store,
        already=not added,
    )
    return replace(verified, already_suppressed=not added)
