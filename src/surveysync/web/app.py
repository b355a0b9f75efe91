"""The survey page as an ASGI application: ``create_app(settings, ledger, clock, hooks)``.

``SurveySite`` is what every request handler shares, built once per process: the ledger,
the clock, the link signer, the page templates, the rate limiter and the answer rules'
settings. A background sweep (every ``sweep_seconds``) turns provisional answers whose
settle window has passed into counted ones and then calls ``hooks.on_tick``; a visit that
makes an answer final calls ``hooks.after_answer`` after its page has been sent. Hooks are
where detractor alerts are connected; their failures are logged, never shown to a customer.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from surveysync.answer_rules import AnswerPolicy
from surveysync.config import Settings
from surveysync.ledger import Ledger, open_ledger
from surveysync.ledger.answers import SurveyRequest
from surveysync.links import link_signer
from surveysync.render import InvalidLink, LinkClaim, LinkProblem
from surveysync.web.limits import RateLimiter
from surveysync.web.pages import PageTemplates
from surveysync.web.security import SecurityHeaders

log = structlog.get_logger("surveysync.web")

Clock = Callable[[], datetime]
SWEEP_SECONDS = 60.0


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Hooks:
    """What else happens when answers change; the lead wires alerts here.

    ``after_answer(ledger, request_id, now)``: a form was sent, so the request's answer is
    final (confirmed), perhaps with a changed score; called after the thank-you page went
    out. ``on_tick(ledger, now)``: after every sweep of provisional answers (every minute),
    which is when clicked answers become final: a sweep over final answers (detractor
    alerts) belongs here, and catches anything ``after_answer`` missed.
    """

    after_answer: Callable[[Ledger, str, datetime], object] | None = None
    on_tick: Callable[[Ledger, datetime], object] | None = None


class SurveySite:
    """Everything a request handler needs, shared by all of them."""

    def __init__(
        self, settings: Settings, ledger: Ledger | None, clock: Clock, hooks: Hooks
    ) -> None:
        web = settings.web
        self.settings = settings
        self._ledger = ledger
        self.clock = clock
        self.hooks = hooks
        self.signer = link_signer(settings.email)
        self.pages = PageTemplates(settings.email.templates_dir)
        self.limiter = RateLimiter(web.rate_burst, web.rate_per_hour)
        self.policy = AnswerPolicy.of(web)
        self.max_body = web.max_body_kib * 1024
        self.client_secret = settings.email.link_secret.get_secret_value().encode("utf-8")
        self.stylesheet = (resources.files("surveysync.web") / "static" / "page.css").read_bytes()
        self.css_version = hashlib.sha256(self.stylesheet).hexdigest()[:12]

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("the survey page's ledger is not open (lifespan not started)")
        return self._ledger

    def open(self) -> bool:
        """Open the configured ledger unless one was handed in; True if opened here."""
        if self._ledger is not None:
            return False
        self._ledger = open_ledger(self.settings)
        return True

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def claim(self, token: str, now: datetime) -> LinkClaim:
        """What a link says, if we signed it and it has not expired; else InvalidLink."""
        try:
            return self.signer.read(token, now)
        except InvalidLink as exc:
            log.info("web.link_refused", problem=exc.problem.value)
            raise

    def resolve(self, token: str, now: datetime) -> tuple[LinkClaim, SurveyRequest]:
        """The claim of a link and its request in this store; InvalidLink says why not."""
        claim = self.claim(token, now)
        request = self.ledger.answers.survey_request(claim.request_id)
        if request is None:
            raise unknown(claim.request_id)
        return claim, request

    def allowed(self, request_id: str, now: datetime) -> bool:
        allowed = self.limiter.allow(request_id, now.timestamp())
        if not allowed:
            log.warning("web.rate_limited", request_id=request_id)
        return allowed

    def tick(self) -> None:
        """Count provisional answers whose window has passed, then call ``on_tick``."""
        now = self.clock()
        try:
            settled = self.ledger.answers.settle_due(now)
            if settled:
                log.info("web.answers_settled", count=len(settled))
            if self.hooks.on_tick is not None:
                self.hooks.on_tick(self.ledger, now)
        except Exception as exc:  # the next tick tries again; the page keeps answering
            log.error("web.sweep_failed", error=type(exc).__name__, detail=str(exc)[:200])

    def answered(self, request_id: str) -> None:
        """Run ``after_answer`` for a request whose answer just became final."""
        if self.hooks.after_answer is None:
            return
        try:
            self.hooks.after_answer(self.ledger, request_id, self.clock())
        except Exception as exc:  # the periodic tick is the safety net
            log.error("web.hook_failed", hook="after_answer", error=type(exc).__name__)


def unknown(request_id: str) -> InvalidLink:
    """A link we signed whose request this store does not have (another store's, or gone)."""
    log.info("web.link_refused", problem="unknown", request_id=request_id)
    return InvalidLink(LinkProblem.UNKNOWN, "no such request in this store")


def create_app(
    settings: Settings,
    ledger: Ledger | None = None,
    clock: Clock | None = None,
    hooks: Hooks | None = None,
    *,
    sweep_seconds: float | None = SWEEP_SECONDS,
) -> Starlette:
    """The survey page. Without ``ledger`` it opens (and closes) the configured one itself;
    ``sweep_seconds=None`` leaves the sweep to whoever calls ``app.state.site.tick()``."""
    from surveysync.web.routes import ROUTES, exception_handlers

    site = SurveySite(settings, ledger, clock or system_clock, hooks or Hooks())
    middleware = [Middleware(SecurityHeaders)]
    if settings.web.trusted_proxies:  # outermost: the rest sees the client the proxy saw
        trusted = list(settings.web.trusted_proxies)
        middleware.insert(0, Middleware(ProxyHeadersMiddleware, trusted_hosts=trusted))
    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers=exception_handlers(),
        lifespan=_lifespan(site, sweep_seconds),
    )
    app.state.site = site
    return app


def _lifespan(
    site: SurveySite, sweep_seconds: float | None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = await run_in_threadpool(site.open)
        sweeper = asyncio.create_task(_sweep(site, sweep_seconds)) if sweep_seconds else None
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
            if opened:
                site.close()

    return lifespan


async def _sweep(site: SurveySite, every: float) -> None:
    while True:
        await run_in_threadpool(site.tick)
        await asyncio.sleep(every)
