"""The header values surveysync writes itself: mailboxes (``From``, ``To``, ``Reply-To``) and
the ``Subject``, quoted, encoded and folded here rather than by the email package.

Why not ``email.headerregistry`` and the policy's folder: while folding, the standard folder
parses the value again, so an RFC 2047 word in an address turns into whatever it encodes
(a line break and a ``Bcc:``, a list of recipients), a long display name holding ``<…>`` loses
its quotes and becomes the address, and a long unbroken name can fold into an empty line that
ends the header block. Here each value is built from parts whose meaning is fixed:

    display name   printable ASCII without "=?": one quoted-string, ``\\`` and ``"`` escaped;
                   anything else: one RFC 2047 word (UTF-8, base64, at most 75 characters),
                   which no parser can read as anything but text. One word, because
                   decoders disagree on the space between two words of a name (RFC 2047
                   drops it, Python's parser keeps it): ``display_name`` shortens such a
                   name to what one word holds
    address        the accepted address (``surveysync.addresses``), as it is, never parsed
    subject        printable ASCII without "=?" as it is; else RFC 2047 words

and a line is folded only before a single space between two visible characters, so that
unfolding (removing the line break) gives back exactly the value. A value never holds a
line break of its own. Pure: no I/O.
"""

from __future__ import annotations

import base64
import re

FOLD_AT = 78  # RFC 5322's recommended line length; a single long token may exceed it
_WORD_BYTES = 45  # base64 of 45 bytes is 60 characters: "=?utf-8?b?" + 60 + "?=" = 72
_FOLD_POINT = re.compile(r"(?<=\S) (?=\S)")
_QUOTED_SPECIALS = re.compile(r'(["\\])')


def _plain_ascii(text: str) -> bool:
    """Text a header can carry as it is: printable ASCII that cannot start an encoded word."""
    return all(" " <= char <= "~" for char in text) and "=?" not in text


def encoded_words(text: str) -> str:
    """``text`` as RFC 2047 words separated by single spaces (which decoders drop)."""
    words: list[str] = []
    chunk = b""
    for char in text:
        encoded = char.encode("utf-8")
        if chunk and len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(_word(chunk))
            chunk = b""
        chunk += encoded
    if chunk:
        words.append(_word(chunk))
    return " ".join(words)


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def display_name(name: str) -> str:
    """``name`` as a mailbox can show it: plain ASCII whole, anything else shortened (whole
    characters) to what one encoded word holds."""
    if _plain_ascii(name):
        return name
    kept = ""
    for char in name:
        if len((kept + char).encode("utf-8")) > _WORD_BYTES:
            break
        kept += char
    return kept.rstrip()


def phrase(name: str) -> str:
    """A display name as RFC 5322 ``phrase``: a quoted-string or one encoded word (the name
    shortened by ``display_name``)."""
    if not name:
        return ""
    if _plain_ascii(name):
        return '"' + _QUOTED_SPECIALS.sub(r"\\\1", name) + '"'
    return encoded_words(display_name(name))


def mailbox(display_name: str, addr_spec: str) -> str:
    """``"Name" <addr>`` or the bare address; ``addr_spec`` is written exactly as given."""
    _one_line(addr_spec)
    shown = phrase(display_name)
    return f"{shown} <{addr_spec}>" if shown else addr_spec


def unstructured(text: str) -> str:
    """A Subject: the text itself when it is plain ASCII, else encoded words."""
    return text if _plain_ascii(text) else encoded_words(text)


def fold(name: str, value: str, linesep: str) -> str:
    """``Name: value`` and its line end, folded before single spaces to keep lines near
    ``FOLD_AT`` characters; a token longer than that stays whole on its own line."""
    _one_line(value)
    lines: list[str] = []
    line = f"{name}:"
    for piece in _FOLD_POINT.split(value):
        if line.endswith(":"):
            line = f"{line} {piece}"
        elif len(line) + 1 + len(piece) > FOLD_AT:
            lines.append(line)
            line = f" {piece}"
        else:
            line = f"{line} {piece}"
    lines.append(line)
    return linesep.join(lines) + linesep


def _one_line(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError("a header value never holds a line break")
