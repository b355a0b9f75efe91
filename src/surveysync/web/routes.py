"""The survey page's addresses and what each does.

    GET  /s/<token>   a score link: the visit is kept and judged (answer_rules), and the
                      page shows the score highlighted, a comment box and Send
    POST /s/<token>   the form: the answer becomes confirmed; the thank-you page follows
    GET  /u/<token>   "Unsubscribe from survey emails?" and a button; changes nothing, so a
                      scanner's fetch never unsubscribes anyone
    POST /u/<token>   the button, or a mail provider's RFC 8058 one-click POST
                      (``List-Unsubscribe=One-Click``): recorded at once, for every store
                      sharing the ledger; a repeat is harmless
    GET  /r/<token>   the review invitation: kept, then a redirect to ``review.url`` only
    GET  /healthz     200 when the ledger answers, for monitoring
    GET  /static/page.css

Every page is in the customer's language (the request's locale); a link that cannot be
used gets a plain page in the store's default language (404 tampered or unknown, 410
expired), never a traceback. Ledger work runs in the thread pool, one short transaction per
visit. Handlers never raise: every failure becomes a page and a log event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import structlog
from sqlalchemy import text
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from surveysync import links
from surveysync.answer_rules import (
    COMMENT_LIMIT,
    CommentProblem,
    Outcome,
    Visit,
    VisitKind,
    clean_comment,
    looks_automated,
    parse_score,
)
from surveysync.config import ReviewInvite
from surveysync.ledger import LedgerError
from surveysync.ledger.answers import SurveyRequest
from surveysync.render import InvalidLink, LinkProblem
from surveysync.web.app import SurveySite, unknown
from surveysync.web.pages import PageFrame, Problem, View
from surveysync.web.security import BodyTooLarge, client_key, cross_site, read_body

log = structlog.get_logger("surveysync.web")
_NO_STORE = {"Cache-Control": "no-store"}
_MAX_FIELDS = 20


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as far as the page needs to know."""

    method: str
    user_agent: str | None
    client: str  # keyed hash, never the address
    root: str  # relative way back to the site's root ("../" from /s/<token>)


def _caller(request: Request, site: SurveySite) -> Caller:
    agent = request.headers.get("user-agent")
    address = request.client.host if request.client else None
    depth = max(0, request.url.path.count("/") - 1)
    return Caller(
        request.method, agent, client_key(site.client_secret, address, agent), "../" * depth
    )


def _site(request: Request) -> SurveySite:
    site: SurveySite = request.app.state.site
    return site


# --- pages -----------------------------------------------------------------------------------


def _page(
    site: SurveySite,
    caller: Caller,
    request: SurveyRequest | None,
    view: View,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    locale = site.pages.locale_for(
        request.locale if request else None, site.settings.store.default_locale
    )
    frame = PageFrame(
        site.settings.store.name,
        request.location_name if request else None,
        caller.root,
        site.css_version,
    )
    html = site.pages.render(locale, frame, view, **context)
    return HTMLResponse(html, status_code=status, headers=_NO_STORE)


def _problem(
    site: SurveySite,
    caller: Caller,
    problem: Problem,
    request: SurveyRequest | None = None,
    status: int | None = None,
) -> HTMLResponse:
    status = status or problem.status
    return _page(site, caller, request, View.PROBLEM, status, problem=problem.value)


Work = Callable[..., Response]


async def _guarded(site: SurveySite, caller: Caller, work: Work, *args: Any) -> Response:
    """Run ``work`` in the thread pool; every failure becomes a page, never a traceback."""
    try:
        return await run_in_threadpool(work, site, caller, *args)
    except InvalidLink as exc:
        expired = exc.problem is LinkProblem.EXPIRED
        return _problem(site, caller, Problem.EXPIRED if expired else Problem.INVALID)
    except LedgerError as exc:
        log.error("web.ledger_unavailable", error=str(exc)[:200])
        return _problem(site, caller, Problem.UNAVAILABLE)
    except Exception as exc:
        log.error("web.failed", error=type(exc).__name__, detail=str(exc)[:200])
        return _problem(site, caller, Problem.UNAVAILABLE, status=500)


def _log_visit(request_id: str, kind: VisitKind, outcome: Outcome | None) -> None:
    # debug: every visit is in the ledger already, and an info event per click would cost
    # more than the visit itself under a scanner's or a crowd's load
    log.debug(
        "web.visit",
        request_id=request_id,
        kind=kind.value,
        outcome=outcome.value if outcome else "not_kept",
    )


# --- the score link and the form -------------------------------------------------------------


async def survey_page(request: Request) -> Response:
    site = _site(request)
    return await _guarded(site, _caller(request, site), _show_survey, request.path_params["token"])


def _show_survey(site: SurveySite, caller: Caller, token: str) -> Response:
    now = site.clock()
    claim = site.claim(token, now)
    if claim.score is None:
        raise InvalidLink(LinkProblem.TAMPERED, "an unsubscribe link on the survey page")
    automated = looks_automated(caller.method, caller.user_agent)
    visit = Visit(VisitKind.SCORE, now, claim.score, automated=automated)
    answers = site.ledger.answers
    if site.allowed(claim.request_id, now):  # one transaction: find, keep, judge, write
        recorded = answers.record(claim.request_id, visit, site.policy, caller.client)
        if recorded is None:
            raise unknown(claim.request_id)
        _log_visit(claim.request_id, VisitKind.SCORE, recorded.outcome)
        survey, answer = recorded.request, recorded.answer
    else:
        _, survey = site.resolve(token, now)
        answer = answers.response(claim.request_id)
    comment = answer.comment if answer and answer.comment else ""
    return _page(site, caller, survey, View.SURVEY, token=token, score=claim.score, comment=comment)


async def survey_form(request: Request) -> Response:
    site = _site(request)
    caller = _caller(request, site)
    token = request.path_params["token"]
    if cross_site(request, site.settings.web.public_url):
        log.warning("web.cross_site_refused", path="s")
        return await _guarded(site, caller, _refuse, token, Problem.REFUSED, 403)
    try:
        body = await read_body(request, site.max_body)
    except BodyTooLarge:
        log.warning("web.body_too_large", path="s")
        return await _guarded(site, caller, _refuse, token, Problem.UNREADABLE, 413)
    return await _guarded(site, caller, _send_survey, token, body)


def _refuse(
    site: SurveySite, caller: Caller, token: str, problem: Problem, status: int
) -> Response:
    """A refusal in the customer's language when the link is good (else the link's page)."""
    _, survey = site.resolve(token, site.clock())
    return _problem(site, caller, problem, survey, status)


def _send_survey(site: SurveySite, caller: Caller, token: str, body: bytes) -> Response:
    now = site.clock()
    claim = site.claim(token, now)
    try:
        fields = _form_fields(body)
        score = parse_score(fields.get("score"))
        comment = clean_comment(fields.get("comment"))
    except CommentProblem:
        return _form_again(site, caller, token, claim.score, fields, "comment")
    except ValueError:  # not a form we made: undecodable, or too many fields
        return _problem(site, caller, Problem.UNREADABLE, site.resolve(token, now)[1])
    if score is None:
        return _form_again(site, caller, token, claim.score, fields, "score")
    if not site.allowed(claim.request_id, now):
        return _problem(site, caller, Problem.LIMITED, site.resolve(token, now)[1])
    visit = Visit(VisitKind.FORM, now, score, comment)
    recorded = site.ledger.answers.record(claim.request_id, visit, site.policy, caller.client)
    if recorded is None:
        raise unknown(claim.request_id)
    _log_visit(claim.request_id, VisitKind.FORM, recorded.outcome)
    if not recorded.confirmed:  # the email's visits are full
        return _problem(site, caller, Problem.LIMITED, recorded.request)
    review = f"{caller.root}r/{token}" if site.settings.review.invites(score) else ""
    response = _page(site, caller, recorded.request, View.THANKS, review_url=review)
    response.background = BackgroundTask(site.answered, claim.request_id)
    return response


def _form_fields(body: bytes) -> dict[str, str]:
    """A url-encoded form's fields; ValueError for anything else."""
    pairs = parse_qsl(
        body.decode("ascii"), keep_blank_values=True, max_num_fields=_MAX_FIELDS, errors="strict"
    )
    return dict(pairs)


def _form_again(
    site: SurveySite,
    caller: Caller,
    token: str,
    score: int | None,
    fields: dict[str, str],
    error: str,
) -> Response:
    """The form once more, with what was typed and what to fix (status 400)."""
    _, survey = site.resolve(token, site.clock())
    chosen = parse_score(fields.get("score"))
    kept = fields.get("comment", "")[:COMMENT_LIMIT]
    context = {"token": token, "score": score if chosen is None else chosen, "comment": kept}
    return _page(site, caller, survey, View.SURVEY, 400, error=error, **context)


# --- unsubscribe -----------------------------------------------------------------------------


async def unsubscribe_page(request: Request) -> Response:
    site = _site(request)
    return await _guarded(
        site, _caller(request, site), _ask_unsubscribe, request.path_params["token"]
    )


def _ask_unsubscribe(site: SurveySite, caller: Caller, token: str) -> Response:
    now = site.clock()
    _, survey = site.resolve(token, now)
    if site.allowed(survey.request_id, now):
        visit = Visit(
            VisitKind.UNSUBSCRIBE, now, automated=looks_automated(caller.method, caller.user_agent)
        )
        site.ledger.answers.record_side(survey.request_id, visit, Outcome.SHOWN, caller.client)
    return _page(site, caller, survey, View.UNSUBSCRIBE, token=token)


async def unsubscribe(request: Request) -> Response:
    site = _site(request)
    caller = _caller(request, site)
    token = request.path_params["token"]
    try:
        body = await read_body(request, site.max_body)
    except BodyTooLarge:
        log.warning("web.body_too_large", path="u")
        return await _guarded(site, caller, _refuse, token, Problem.UNREADABLE, 413)
    # RFC 8058: mailbox providers POST this from their servers, without a browser; any site
    # may hold the link, and the link alone is the authority, so it is never refused.
    one_click = b"List-Unsubscribe" in body and b"One-Click" in body
    if not one_click and cross_site(request, site.settings.web.public_url):
        log.warning("web.cross_site_refused", path="u")
        return await _guarded(site, caller, _refuse, token, Problem.REFUSED, 403)
    return await _guarded(site, caller, _unsubscribe, token, one_click)


def _unsubscribe(site: SurveySite, caller: Caller, token: str, one_click: bool) -> Response:
    now = site.clock()
    _, survey = site.resolve(token, now)
    source = "one-click" if one_click else "link"
    links.unsubscribe_by_link(site.ledger, site.signer, token, now, source=source)
    if site.allowed(survey.request_id, now):
        visit = Visit(VisitKind.UNSUBSCRIBE, now, automated=one_click)
        site.ledger.answers.record_side(
            survey.request_id, visit, Outcome.UNSUBSCRIBED, caller.client
        )
    return _page(site, caller, survey, View.UNSUBSCRIBED)


# --- the review invitation, health, style ----------------------------------------------------


async def review(request: Request) -> Response:
    site = _site(request)
    return await _guarded(
        site, _caller(request, site), _follow_review, request.path_params["token"]
    )


def _follow_review(site: SurveySite, caller: Caller, token: str) -> Response:
    now = site.clock()
    _, survey = site.resolve(token, now)
    target = site.settings.review.url
    if target is None or site.settings.review.invite is ReviewInvite.OFF:
        return _problem(site, caller, Problem.INVALID, survey)
    if site.allowed(survey.request_id, now):
        visit = Visit(
            VisitKind.REVIEW, now, automated=looks_automated(caller.method, caller.user_agent)
        )
        site.ledger.answers.record_side(survey.request_id, visit, Outcome.REDIRECTED, caller.client)
    # Only ever the configured address: nothing in the request chooses where this goes.
    headers = {**_NO_STORE, "Referrer-Policy": "no-referrer"}
    return RedirectResponse(target, status_code=303, headers=headers)


async def healthz(request: Request) -> Response:
    site = _site(request)

    def probe() -> None:
        with site.ledger.db.reading() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(probe)
    except Exception as exc:
        log.error("web.health_failed", error=type(exc).__name__)
        return JSONResponse({"status": "unavailable"}, status_code=503, headers=_NO_STORE)
    return JSONResponse({"status": "ok", "store": site.settings.store.id}, headers=_NO_STORE)


async def stylesheet(request: Request) -> Response:
    site = _site(request)
    headers = {"Cache-Control": "public, max-age=86400"}
    return Response(site.stylesheet, media_type="text/css; charset=utf-8", headers=headers)


async def _http_problem(request: Request, exc: Exception) -> Response:
    """No such page (404), or a method this address does not take (405)."""
    site = _site(request)
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return _problem(site, _caller(request, site), Problem.INVALID, status=status)


def exception_handlers() -> dict[Any, Any]:
    return {404: _http_problem, 405: _http_problem}


ROUTES = [
    Route("/s/{token}", survey_page, methods=["GET"]),
    Route("/s/{token}", survey_form, methods=["POST"]),
    Route("/u/{token}", unsubscribe_page, methods=["GET"]),
    Route("/u/{token}", unsubscribe, methods=["POST"]),
    Route("/r/{token}", review, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/static/page.css", stylesheet, methods=["GET"]),
]
