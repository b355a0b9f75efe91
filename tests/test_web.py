"""The survey page on a real uvicorn server (127.0.0.1), with the clock injected: answers,
link scanners, unsubscribing, the review invitation and what keeps the page safe."""

from __future__ import annotations

import queue
import re
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from surveysync.links import link_signer
from surveysync.model import COUNTED
from surveysync.web import Hooks
from tests.conftest import Store
from tests.web_kit import SENT_AT, SurveyPage, survey_page


@pytest.fixture
def page(store: Store) -> SurveyPage:
    with survey_page(store) as running:
        yield running  # type: ignore[misc]


@pytest.fixture
def shared_page(ledger_url: str, tmp_path: Path) -> SurveyPage:
    """The page on each ledger the product supports (SQLite and PostgreSQL)."""
    with survey_page(Store(tmp_path, ledger_url)) as running:
        yield running  # type: ignore[misc]


def counted(page: SurveyPage) -> list[tuple[str, int]]:
    """The answers NPS is computed from: (status, score) of every counted response."""
    rows = page.store.ledger_rows("SELECT status, score FROM responses")
    return sorted((status, score) for status, score in rows if status in COUNTED)


# --- link scanners and people ---------------------------------------------------------------


def test_a_scanner_pass_over_all_eleven_links_makes_no_answer(shared_page: SurveyPage) -> None:
    """A mail scanner fetching all 11 score links within one second leaves no answer, no
    alert and NPS unchanged, however long one waits; every visit is kept as the scanner's."""
    page = shared_page
    with page.client() as client:
        for link in page.emails["C1"].scores:
            assert client.get(link).status_code == 200
            page.clock.advance(seconds=0.09)
    page.clock.advance(days=2)
    page.site.tick()
    assert page.answer("C1") == {
        "status": "scanner", "score": None, "comment": None, "answered_at": None
    }  # fmt: skip
    assert page.outcomes("C1") == ["scanner"] * 11
    assert counted(page) == []
    assert page.store.ledger_rows("SELECT COUNT(*) FROM alerts") == [(0,)]


def test_one_click_with_the_tab_closed_counts_after_the_settle_window(
    shared_page: SurveyPage,
) -> None:
    """A person who clicks 9 and closes the tab is counted, once 30 minutes pass."""
    page = shared_page
    with page.client() as client:
        assert client.get(page.emails["C2"].scores[9]).status_code == 200
    assert page.answer("C2")["status"] == "provisional"  # type: ignore[index]
    page.clock.advance(minutes=29)
    page.site.tick()
    assert counted(page) == []
    page.clock.advance(minutes=2)
    page.site.tick()
    assert counted(page) == [("clicked", 9)]
    assert page.outcomes("C2") == ["provisional"]


def test_a_scanner_pass_then_the_persons_own_click_counts(page: SurveyPage) -> None:
    """After a scanner's pass at delivery, the customer's click an hour later still counts."""
    with page.client() as client:
        for link in page.emails["C1"].scores:
            client.get(link)
        page.clock.advance(hours=1)
        client.get(page.emails["C1"].scores[4])
    page.clock.advance(minutes=31)
    page.site.tick()
    assert counted(page) == [("clicked", 4)]
    assert page.outcomes("C1") == ["scanner"] * 11 + ["provisional"]


def test_a_scanner_with_a_tool_user_agent_fetching_one_link_makes_no_answer(
    page: SurveyPage,
) -> None:
    """A prefetcher that fetches only the first link (score 0) is not a detractor."""
    with page.client("python-httpx/0.28") as tool:
        tool.head(page.emails["C1"].scores[0])
        tool.get(page.emails["C1"].scores[0])
    page.clock.advance(days=1)
    page.site.tick()
    assert counted(page) == [] and page.outcomes("C1") == ["automated", "automated"]


def test_the_form_confirms_at_once_and_may_change_the_score_once_more(page: SurveyPage) -> None:
    """Sending the form counts at once; sending again changes score and comment."""
    link = page.emails["C3"].scores[6]
    with page.client() as client:
        shown = client.get(link)
        assert 'value="6" id="score-6" checked' in shown.text
        sent = client.post(link, data={"score": "6", "comment": "친절했어요"})
        assert sent.status_code == 200 and "<h1>감사합니다!</h1>" in sent.text
        page.clock.advance(minutes=3)
        again = client.post(link, data={"score": "8", "comment": "다시 생각해 보니 좋았어요"})
        assert again.status_code == 200
    answer = page.answer("C3")
    assert answer is not None
    assert (answer["status"], answer["score"]) == ("confirmed", 8)
    assert answer["comment"] == "다시 생각해 보니 좋았어요"
    assert page.outcomes("C3") == ["provisional", "confirmed", "confirmed"]
    assert counted(page) == [("confirmed", 8)]


def test_a_comment_is_shown_as_text_never_as_markup(page: SurveyPage) -> None:
    """A comment holding HTML comes back escaped on the page, and is kept as written."""
    link = page.emails["C1"].scores[2]
    comment = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with page.client() as client:
        client.post(link, data={"score": "2", "comment": comment})
        shown = client.get(link).text
    assert "<script>" not in shown and "<img" not in shown
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in shown
    assert page.answer("C1")["comment"] == comment  # type: ignore[index]


def test_a_comment_over_2000_characters_is_refused_with_the_form_kept(page: SurveyPage) -> None:
    """Too long a comment comes back with what to fix, and nothing is recorded."""
    link = page.emails["C2"].scores[5]
    with page.client() as client:
        refused = client.post(link, data={"score": "5", "comment": "ä" * 2001})
        missing = client.post(link, data={"comment": "geen cijfer"})
        fine = client.post(link, data={"score": "5", "comment": "ä" * 2000})
    assert refused.status_code == 400 and "houd het bij maximaal 2.000 tekens" in refused.text
    assert missing.status_code == 400 and "Kies een cijfer van 0 tot en met 10." in missing.text
    assert fine.status_code == 200 and page.answer("C2")["comment"] == "ä" * 2000  # type: ignore[index]
    assert page.outcomes("C2") == ["confirmed"]


# --- unsubscribe ----------------------------------------------------------------------------


def test_unsubscribe_asks_first_then_holds_for_the_next_run(page: SurveyPage) -> None:
    """A GET shows a button and changes nothing; the button unsubscribes at once, a repeat
    is harmless, and the next run skips the person as unsubscribed."""
    link = page.emails["C4"].unsubscribe
    with page.client() as client:
        asked = client.get(link)
        assert (
            asked.status_code == 200 and "¿Darse de baja de las encuestas por correo?" in asked.text
        )
        assert page.store.ledger_rows("SELECT COUNT(*) FROM suppressions") == [(0,)]
        done = client.post(link, data={"confirm": "1"})
        repeat = client.post(link, data={"confirm": "1"})
    assert done.status_code == 200 and "Se ha dado de baja" in done.text
    assert repeat.status_code == 200
    assert page.store.ledger_rows("SELECT kind, source FROM suppressions") == [("email", "link")]
    page.store.pos.sale("C4", SENT_AT + timedelta(days=120))
    page.store.run(SENT_AT + timedelta(days=120, hours=12))
    reasons = page.store.ledger_rows(
        "SELECT reason FROM decisions WHERE customer_id = 'C4' ORDER BY sale_at"
    )
    assert reasons == [(None,), ("unsubscribed",)]


def test_a_mail_providers_one_click_unsubscribe_is_recorded_at_once(page: SurveyPage) -> None:
    """RFC 8058: the provider's POST with List-Unsubscribe=One-Click unsubscribes, whatever
    sent it, and the page answers 200."""
    with httpx.Client(timeout=60) as provider:
        answer = provider.post(
            page.emails["C5"].unsubscribe,
            content=b"List-Unsubscribe=One-Click",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "https://mail.provider.example",
            },
        )
    assert answer.status_code == 200 and "Odjavljeni ste" in answer.text
    assert page.store.ledger_rows("SELECT source FROM suppressions") == [("one-click",)]


# --- the review invitation ------------------------------------------------------------------

REVIEW_URL = "https://g.page/r/demo-cycles/review"


@pytest.mark.parametrize(
    ("invite", "score", "invited"),
    [
        ("everyone", 3, True),
        ("everyone", 10, True),
        ("promoters", 8, False),
        ("promoters", 9, True),
        ("off", 10, False),
    ],
)
def test_the_thank_you_page_invites_a_review_as_configured(
    store: Store, invite: str, score: int, invited: bool
) -> None:
    """Who is invited follows review.invite; the invitation redirects only to review.url."""
    review = {"url": f'"{REVIEW_URL}"', "invite": f'"{invite}"'}
    with survey_page(store, review=review, customers={"C1": "en"}) as page:
        link = page.emails["C1"].scores[score]
        with page.client() as client:
            thanks = client.post(link, data={"score": str(score)})
            offered = re.search(r'href="(\.\./r/[^"]+)"', thanks.text)
            assert bool(offered) is invited
            follow = client.get(link.replace("/s/", "/r/") + "?next=https://evil.example")
    if invite == "off":
        assert follow.status_code == 404
        return
    assert follow.status_code == 303 and follow.headers["location"] == REVIEW_URL
    assert follow.headers["referrer-policy"] == "no-referrer"
    assert "redirected" in page.outcomes("C1")


# --- links that cannot be used --------------------------------------------------------------


def test_unusable_links_get_a_plain_page_in_the_stores_language(page: SurveyPage) -> None:
    """Tampered and unknown links answer 404, expired ones 410, each a plain page in the
    store's default language, never a traceback."""
    link = page.emails["C3"].scores[7]
    base, token = link.rsplit("/", 1)
    signer = link_signer(page.store.settings().email)  # the store's own secret
    old = signer.score_token(page.emails["C3"].request_id, 7, SENT_AT - timedelta(days=61))
    unknown = signer.score_token("f" * 32, 7, SENT_AT)
    cases = {
        f"{base}/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}": (404, "This link does not work"),
        f"{base}/{unknown}": (404, "This link does not work"),
        f"{base}/{old}": (410, "This survey has closed"),
        f"{base}/not-a-token-at-all": (404, "This link does not work"),
        f"{page.url}/nothing/here": (404, "This link does not work"),
    }
    with page.client() as client:
        for url, (status, title) in cases.items():
            answer = client.get(url)
            assert answer.status_code == status, url
            assert f"<h1>{title}</h1>" in answer.text and '<html lang="en">' in answer.text
            assert "Traceback" not in answer.text
    assert page.store.ledger_rows("SELECT COUNT(*) FROM clicks") == [(0,)]


# --- what keeps the page safe ---------------------------------------------------------------


def test_every_page_has_a_strict_policy_and_loads_nothing_from_elsewhere(
    page: SurveyPage,
) -> None:
    """No script, no inline style, nothing from another host, never framed; pages with a
    token are never cached."""
    email = page.emails["C1"]
    with page.client() as client:
        answers = [
            client.get(email.scores[8]),
            client.post(email.scores[8], data={"score": "8"}),
            client.get(email.unsubscribe),
            client.get(email.scores[8][:-3]),
        ]
        css = client.get(f"{page.url}/static/page.css")
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert policy == (
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        html = answer.text
        assert "<script" not in html and " style=" not in html and "@" not in html
        assert not re.search(r'(?:src|href|action)="(?:https?:)?//', html)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_forms_from_other_sites_and_oversized_bodies_are_refused(page: SurveyPage) -> None:
    """A post from another site's page gets 403, a body over the cap 413; neither records."""
    link = page.emails["C2"].scores[1]
    with page.client() as client:
        foreign = client.post(link, data={"score": "0"}, headers={"Origin": "https://evil.example"})
        fetched = client.post(link, data={"score": "0"}, headers={"Sec-Fetch-Site": "cross-site"})
        huge = client.post(link, content=b"score=1&comment=" + b"x" * 40_000)
        foreign_unsubscribe = client.post(
            page.emails["C2"].unsubscribe,
            data={"confirm": "1"},
            headers={"Origin": "https://evil.example"},
        )
        own = client.post(link, data={"score": "1"}, headers={"Origin": page.url})
    assert foreign.status_code == 403 and "Dit formulier kon niet worden verstuurd" in foreign.text
    assert fetched.status_code == 403
    assert huge.status_code == 413
    assert foreign_unsubscribe.status_code == 403
    assert own.status_code == 200
    assert page.outcomes("C2") == ["confirmed"]
    assert page.store.ledger_rows("SELECT COUNT(*) FROM suppressions") == [(0,)]


def test_one_email_cannot_write_thousands_of_rows(page: SurveyPage) -> None:
    """A link hammered 200 times writes its burst of 30 visits, then more only as the hour
    allows; the page keeps answering, and a form over the limit is asked to wait."""
    link = page.emails["C1"].scores[3]
    with page.client() as client:
        statuses = {client.get(link).status_code for _ in range(200)}
        waited = client.post(link, data={"score": "3"})
        page.clock.advance(hours=1)
        later = client.post(link, data={"score": "3"})
    assert statuses == {200}
    assert waited.status_code == 429 and "One moment, please" in waited.text
    assert later.status_code == 200
    assert len(page.outcomes("C1")) == 31


def test_proxy_headers_are_believed_only_from_trusted_proxies(store: Store) -> None:
    """Behind a trusted proxy that says https, the form from the https page is accepted;
    the same headers from anyone else change nothing."""
    for trusted, expected in (('["127.0.0.1"]', 200), ("[]", 403)):
        root = store.root / f"trusted-{expected}"
        root.mkdir()
        with survey_page(
            Store(root), web={"trusted_proxies": trusted}, customers={"C1": "en"}
        ) as page:
            link = page.emails["C1"].scores[9]
            host = page.url.removeprefix("http://")
            with page.client() as client:
                answer = client.post(
                    link,
                    data={"score": "9"},
                    headers={"X-Forwarded-Proto": "https", "Origin": f"https://{host}"},
                )
            assert answer.status_code == expected


# --- monitoring, hooks and a busy ledger ----------------------------------------------------


def test_healthz_answers_for_monitoring(page: SurveyPage) -> None:
    """GET /healthz is 200 with the store while the ledger answers."""
    with page.client("monitoring/1.0") as client:
        answer = client.get(f"{page.url}/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "store": "test"}


def test_hooks_hear_of_sent_forms_and_of_every_sweep(store: Store) -> None:
    """after_answer runs once a form is sent (after the thank-you page went out); on_tick
    after every sweep, which is when a lone click's answer becomes final; a failing hook
    never reaches the customer."""
    answered: queue.Queue[str] = queue.Queue()
    ticks: list[object] = []

    def after_answer(ledger: object, request_id: str, now: object) -> None:
        answered.put(request_id)
        raise RuntimeError("the alert provider is down")

    hooks = Hooks(after_answer=after_answer, on_tick=lambda ledger, now: ticks.append(now))
    with survey_page(store, hooks=hooks, customers={"C1": "en", "C2": "nl"}) as page:
        with page.client() as client:
            assert client.post(page.emails["C1"].scores[2], data={"score": "2"}).status_code == 200
            assert answered.get(timeout=60) == page.emails["C1"].request_id
            assert client.get(page.emails["C2"].scores[8]).status_code == 200
        page.clock.advance(minutes=31)
        page.site.tick()
        assert page.answer("C2")["status"] == "clicked"  # type: ignore[index]
    assert ticks == [page.clock.now] and answered.empty()


def test_the_page_keeps_answering_while_a_writer_holds_the_sqlite_ledger(
    page: SurveyPage,
) -> None:
    """Reads never wait behind the night's write transaction; a click waits only until the
    writer commits, then is recorded."""
    clicked: list[int] = []
    with page.client() as client:
        click = threading.Thread(
            target=lambda: clicked.append(client.get(page.emails["C1"].scores[9]).status_code)
        )
        with page.ledger.db.transaction():  # BEGIN IMMEDIATE: the write lock, as a sync holds it
            assert client.get(f"{page.url}/healthz").status_code == 200
            click.start()
        click.join(timeout=60)
    assert clicked == [200] and page.outcomes("C1") == ["provisional"]


def test_public_url_makes_the_email_links_point_at_the_page(page: SurveyPage) -> None:
    """With web.public_url set, every link in the email opens on the page."""
    for email in page.emails.values():
        assert all(link.startswith(f"{page.url}/s/") for link in email.scores)
        assert email.unsubscribe.startswith(f"{page.url}/u/")
