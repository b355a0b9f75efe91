"""The bytes of a survey email: one fixed MIME shape, written directly.

Every message surveysync writes has the same structure, so it is not built through the
email package (``EmailMessage``, its header registry, policy and generator cost some 2 ms a
message, ten times the rest of writing it):

    header block          the caller's, written by ``render.message`` (``render.headers``)
    MIME-Version, Content-Type: multipart/alternative; boundary
    text/plain part       charset utf-8, quoted-printable
    text/html part        charset utf-8, quoted-printable (MIME-Version: 1.0, as the email
                          package writes an added alternative)

The result means what the email package wrote for the same message (tests parse both back
with the strict policy and compare every header and both parts' content): line ends in a
body are normalized to one newline each, and the body ends with one, as the email package's
``set_content`` does; quoted-printable comes from ``binascii.b2a_qp`` (lines of at most 76
characters, soft break included, as RFC 2045 asks; trailing spaces and tabs encoded). Lines
end in CRLF.

Why a boundary that starts with ``=`` is always safe: quoted-printable writes every ``=`` of
the content as ``=3D`` and a soft break only at a line's end, so no body line can start with
``--=``. Pure: no I/O.
"""

from __future__ import annotations

import binascii
import random

CRLF = b"\r\n"
_PART_HEAD = (
    b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
)
_TEXT_HEAD = _PART_HEAD % b"plain"
_HTML_HEAD = _PART_HEAD % b"html" + b"MIME-Version: 1.0\r\n"


def message_bytes(head: str, text: str, html: str) -> bytes:
    """The whole message: ``head`` (the caller's header lines, folded, each ending in CRLF),
    the MIME headers, then the two alternatives.

    The header block is written as UTF-8: it is ASCII unless an address's local part is not
    (such a message needs SMTPUTF8 and is RFC 6532 UTF-8, as the email package writes it)."""
    boundary = new_boundary()
    delimiter = b"--" + boundary + CRLF
    return b"".join(
        (
            head.encode("utf-8"),
            b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n",
            b' boundary="' + boundary + b'"\r\n\r\n',
            delimiter,
            _TEXT_HEAD,
            CRLF,
            quoted_printable(text),
            CRLF,
            delimiter,
            _HTML_HEAD,
            CRLF,
            quoted_printable(html),
            CRLF,
            b"--" + boundary + b"--" + CRLF,
        )
    )


def new_boundary() -> bytes:
    """A boundary like the email package's: 15 ``=``, 19 random digits, ``==``."""
    return b"===============%019d==" % random.randrange(10**19)


def quoted_printable(content: str) -> bytes:
    """``content`` as UTF-8 quoted-printable with CRLF line ends, ending in one: its lines
    split where the email package splits them (CR, LF or CRLF), so it decodes alike."""
    lines = content.encode("utf-8").splitlines()
    encoded = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True)
    return encoded.replace(b"\n", CRLF)
