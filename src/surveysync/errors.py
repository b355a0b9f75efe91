"""What every stage's error translation shares: the one line of a foreign error worth showing.

Each stage turns foreign errors (SQLAlchemy, drivers, httpx) into its own error tree at its
boundary; they all quote the driver's first line the same way, through ``first_line``.
Imports nothing of surveysync.
"""

from __future__ import annotations

_LIMIT = 300


def first_line(exc: BaseException) -> str:
    """The first line of the driver's own message (SQLAlchemy wraps it as ``orig``), bounded;
    the exception's class name when it says nothing."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip()
    return text.splitlines()[0][:_LIMIT] if text else type(original).__name__


_MASK = "***"


def url_credentials(url: str) -> list[tuple[str, str]]:
    """What of a database URL's user name and password can show up in an error, each with
    what to show instead: found from the URL's structure, not by guessing at the text.

    The user information is everything between ``://`` and the last ``@`` before the path.
    A password with an unencoded ``@`` (``postgresql://u:p@ss@host/db``) makes a driver read
    part of it as the host ("failed to resolve host 'ss@host'"), so that misread host is
    masked too."""
    scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo = authority.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    if not sep or not password:
        return []
    masked_url = f"{scheme}://{_MASK}@{rest[len(userinfo) + 1 :]}"
    pieces = [userinfo, password, *password.split("@")]  # a user name is no secret
    # Very short pieces (a one-letter user name) would mask ordinary words; they are masked
    # as part of the longer ones.
    pairs = [(url, masked_url)] + [(piece, _MASK) for piece in pieces if len(piece) >= 4]
    if "@" in password:
        # What a driver takes for the host starts with the password's tail and an "@".
        tail = password.rpartition("@")[2]
        pairs.append((f"{tail}@", f"{_MASK}@"))
    # Longest first, so a value holding another is masked whole.
    return sorted(set(pairs), key=lambda pair: -len(pair[0]))


def without_credentials(text: str, url: str) -> str:
    """``text`` with every piece of ``url``'s user information masked."""
    for secret, shown in url_credentials(url):
        text = text.replace(secret, shown)
    return text


def ambiguous_userinfo(url: str) -> bool:
    """True when the URL's user name or password holds an unencoded ``@`` (it must be
    written ``%40``): drivers then read part of the password as the host."""
    rest = url.partition("://")[2]
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return authority.count("@") > 1
