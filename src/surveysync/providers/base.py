"""The provider seam: one small interface that every email provider adapter implements.

Error tree (every foreign error leaves an adapter as one of these)::

    ProviderError             the provider answered in a way we cannot read (an unknown
    │                         shape, not JSON): the run stops, and a batch it was sending
    │                         stays ``sending``, held in doubt by the next run like a crash
    └── ProviderUnavailable   nothing in the batch was sent but its ``results`` (the part
        │                     that went out before the provider was lost); the rest is safe
        │                     to try again later
        └── ProviderLost      as above, except the ``lost`` requests: a call that carried
                              them may have been taken (its answer never came) before the
                              provider went away. Only a provider that honours keys raises
                              it: they are repeated under ``key``, the key they went out
                              under, never returned to pending (a new call, a new key: twice)

A call whose fate is unknown (the connection died before the answer) is not an exception:
each request of it is answered ``in_doubt``, so the ledger records every one of them at once
(an exception would leave them ``sending`` and stop the run for a well-understood outcome).

A problem with one address is not an exception either: it is that request's ``SendResult``
and the rest of the batch goes on. Its status says what the ledger must do with it:

    sent       accepted by the provider
    rejected   refused for good (the provider's message kept); the cooldown is given back.
               ``address_refused``: the refusal is about the address itself (an SMTP 5xx to
               RCPT, a provider's inactive or invalid recipient): the ledger suppresses it,
               so no later sale tries it again
    failed     could not be sent for a reason of ours; the cooldown is given back
    pending    refused for now (a 4xx that outlived its retries): nothing left the
               building, and the next run sends it
    in_doubt   the provider may have taken it (the connection died before its answer);
               never sent again automatically, listed by ``status``

These are ``RequestStatus`` values (``surveysync.model``): the word a provider answers is
the word the ledger records. ``sending`` is never a result.

Every adapter is built the same way, from the whole ``ProviderSettings``
(``from_settings``); ``surveysync.providers`` finds it by its kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from surveysync.config import ProviderSettings
from surveysync.model import RequestStatus
from surveysync.render import SurveyEmail


class ProviderError(Exception):
    """The provider could not take the batch."""


class ProviderUnavailable(ProviderError):
    """Nothing in the batch was sent (unreachable, refused, misconfigured); retry later.

    ``results`` holds what was settled before the provider was lost (an SMTP connection that
    died half-way through a batch): those requests must be recorded, not sent again.
    """

    def __init__(self, message: str, results: Sequence[SendResult] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


class ProviderLost(ProviderUnavailable):
    """The provider went away after a call that may have reached it; see the module doc."""

    def __init__(
        self,
        message: str,
        results: Sequence[SendResult] = (),
        *,
        lost: Sequence[str],
        key: str,
    ) -> None:
        super().__init__(message, results)
        self.lost = list(lost)
        self.key = key


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    request_id: str
    idempotency_key: str  # this request's own key (the request id)
    message: SurveyEmail
    # The key of the provider call this email goes out in, the same for every email of the
    # call and again when a crashed call is sent again: for batch endpoints' idempotency.
    batch_key: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    request_id: str
    status: RequestStatus  # never SENDING
    provider_message_id: str | None = None
    error: str | None = None
    address_refused: bool = False  # only with REJECTED: the address is refused for good


@dataclass(frozen=True, slots=True)
class Suppressed:
    """An address the provider will not send to (unsubscribed, complained, bounced)."""

    email: str
    reason: str | None = None


@runtime_checkable
class SplitsRefusedBatches(Protocol):
    """A provider that sends the messages of a batch refused as a whole one by one, each
    under a key of its own. ``on_split``, when set, is called with each message's request id
    and new key before the first of them goes out, so that the caller can record the keys
    first: a crash half-way then repeats each message alone, under the key it went out under."""

    on_split: Callable[[Sequence[tuple[str, str]]], None] | None


@runtime_checkable
class SuppressionSource(Protocol):
    """A provider whose suppression list can be pulled into the ledger before each run."""

    def fetch_suppressions(self, cursor: str | None) -> tuple[list[Suppressed], str | None]:
        """Every suppression since ``cursor`` (None: all), and the cursor to ask from next
        time. Raises ProviderError when the list cannot be read."""
        ...


class Provider(Protocol):
    name: str
    max_batch_size: int
    honours_idempotency_key: bool
    # Given a message's provider template, sends the template id and its data and none of
    # the locally rendered text or HTML: the sync then does not render those.
    renders_templates: bool

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        """One result per request, in any order; raise ProviderError for the batch as a whole."""
        ...

    def check(self) -> str:
        """A harmless readiness check; returns a short description or raises ProviderError."""
        ...

    def close(self) -> None: ...


class AdapterClass(Protocol):
    """What each provider module names ``Adapter``: a class built from the settings."""

    def from_settings(self, settings: ProviderSettings) -> Provider:
        """The adapter as ``settings`` (``provider.kind`` and its section) describe it."""
        ...
