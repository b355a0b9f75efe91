"""The provider seam: one small interface that every email provider adapter implements.

Error tree (every foreign error leaves an adapter as one of these)::

    ProviderError
    ├── ProviderUnavailable   nothing in the batch was sent; safe to try again later
    └── ProviderInDoubt       the batch may or may not have been sent (a crash-like outcome)

A problem with one address is not an exception: it is that request's ``SendResult`` with
status ``rejected`` and the provider's message, and the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from surveysync.render import SurveyEmail

Outcome = Literal["sent", "rejected", "failed"]


class ProviderError(Exception):
    """The provider could not take the batch."""


class ProviderUnavailable(ProviderError):
    """Nothing in the batch was sent (unreachable, refused, misconfigured); retry later."""


class ProviderInDoubt(ProviderError):
    """The batch may have been sent; only an idempotency key makes a retry safe."""


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    request_id: str
    idempotency_key: str
    message: SurveyEmail


@dataclass(frozen=True, slots=True)
class SendResult:
    request_id: str
    status: Outcome
    provider_message_id: str | None = None
    error: str | None = None


class Provider(Protocol):
    name: str
    max_batch_size: int
    honours_idempotency_key: bool

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        """One result per request, in any order; raise ProviderError for the batch as a whole."""
        ...

    def check(self) -> str:
        """A harmless readiness check; returns a short description or raises ProviderError."""
        ...

    def close(self) -> None: ...
