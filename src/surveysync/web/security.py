"""What keeps the survey page safe to put on the internet, in one place:

- ``SecurityHeaders``: every answer carries a strict Content-Security-Policy (no script at
  all, styles and images only from this site, forms only to this site, never framed) and
  the usual companions. The page works entirely without JavaScript, so nothing is lost.
- ``read_body``: request bodies are capped (``web.max_body_kib``) before they are parsed.
- ``cross_site``: a form sent from another site (its ``Origin`` or ``Sec-Fetch-Site`` says
  so) is refused. The page sets no cookie at all, so a cross-site post has no ambient
  session to ride on (``SameSite`` has nothing to protect); the signed token in the form's
  address is the only authority, and it is unforgeable.
- ``client_key``: who visited, as a keyed hash of address and user agent, so that a
  report can tell one browser from many without the ledger keeping an IP address.

Proxy headers (``X-Forwarded-For``/``-Proto``) are believed only from ``web.trusted_proxies``
(uvicorn's ``ProxyHeadersMiddleware``, installed by ``create_app``).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Same-origin keeps the Origin header on our own form posts (no-referrer would turn it
    # into "null") while a followed review link tells the review site nothing.
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP answer that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in _HEADERS if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyTooLarge(Exception):
    """A request body over the configured cap."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (BodyTooLarge) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge(f"declared {declared} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"over {limit} bytes")
    return bytes(body)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site(request: Request, public_url: str | None) -> bool:
    """Whether a POST came from a page of another site."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's form (a mail provider's one-click POST, a tool)
        return False
    ours = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    if public_url:
        ours.add(origin_of(public_url))
    return origin.lower() not in ours


def client_key(secret: bytes, address: str | None, user_agent: str | None) -> str:
    """A keyed hash naming one browser on one address, never reversible to either."""
    message = f"{address or ''}\n{user_agent or ''}".encode("utf-8", "replace")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]
