"""A corpus of hostile and broken POS rows, written straight into an Ascend-like SQLite POS
(bypassing every layer of ours), each row with the decision a store should see.

Names, addresses, times, totals and encodings as cashiers, imports and old software leave
them. Every sale is on 20 November 2026 (UTC, the corpus store's ``pos.timestamps``); a run
on the night of the 21st reads it all.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path

from surveysync.addresses import accept
from surveysync.render.headers import display_name
from surveysync.render.message import clean_text

DAY = "2026-11-20"

NAMES: list[tuple[str | None, str | None]] = [
    ("Kim", "Jansen"),
    ("Eve\r\nBcc: all@example.com", "X"),
    ("Robert", "\r\nBcc: victim@example.com\r\n"),
    ('Ann "the boss" O\'Neil, <admin@example.com>', "Smith"),
    ("Ann " * 10 + "<evil@evil.example>", "Doe"),
    ("a" * 40 + '"<evil@evil.example>', "B" * 40),
    ("A" * 40, "B" * 40),  # 81 characters without a usable fold before the address
    ("A" * 79, None),
    ("Z" * 10_000, "Y" * 10_000),
    ("민준" * 60, "김" * 60),
    ("Jürgen" * 30, 'x"<a@b>\\'),
    ("=?utf-8?b?YQ0KQmNjOiB2aWN0aW1AZXZpbC5leGFtcGxl?=", "=?utf-8?q?Injected?="),
    ("<script>alert(1)</script>", "&amp;"),
    ("מרים \u202egnp.exe", "\u2066x\u2069"),
    ("🚲😀 Jo", "👨‍👩‍👧"),
    ("back\\slash", 'quo"te'),
    ("comma, semicolon;", "colon: (comment)"),
    ("   ", "\t\t"),
    ("", ""),
    (None, None),
    ("nul\x00byte", "bell\x07"),
    ("tab\tbed", "line\u2028sep"),
    ("e\u0301\u0301\u0301", "zero\u200bwidth"),
    ("@", "@@"),
    ("Siobhán", "O'Brien"),
    ("Žiga", "Kovačič"),
    ("?=", "=?"),
    ("   leading", "trailing   "),
    ("x" * 99 + " y", "z" * 101),
    ("\ufeffBOM", "\ufffd"),
]

VALID_ADDRESSES = [
    "kim.{n}@example.com",
    "Kim.{n}@Example.COM",
    "o'brien.{n}@example.ie",
    "a+tag.{n}@sub.example.org",
    "jürgen.{n}@bücher.example",
    "민준.{n}@example.kr",
    "x{{y}}|~.{n}@example.com",
    "user.{n}@xn--bcher-kva.example",
]

INVALID_ADDRESSES = [
    "=?utf-8?b?YQ0KQmNjOiB2aWN0aW1AZXZpbC5leGFtcGxl?=@example.com",
    "=?utf-8?q?a=2C_b=40evil.example=2C_c?=@example.com",
    "=?utf-8?Q?kim?=@example.com",
    "kim@example.com\r\nBcc: victim@evil.example",
    " kim@example.com",
    "kim@example.com ",
    "kim@example.com\r\n",
    "\nkim@example.com",
    "\tkim@example.com",
    "Kim <kim@example.com>",
    "kim@example.com, eve@evil.example",
    "kim@example.com;eve@evil.example",
    '"kim jansen"@example.com',
    "kim(comment)@example.com",
    "kim@@example.com",
    "kim@example..com",
    "kim.@example.com",
    "kim@[127.0.0.1]",
    "kim@localhost",
    "kim\x00@example.com",
    "k\u202eim@example.com",
    "kim\u200b@example.com",
    "k" * 65 + "@example.com",
    "kim@" + "a" * 250 + ".com",
    "geen-apenstaartje.example.nl",
    "@example.org",
    "name@",
    "a b@example.com",
]

NO_ADDRESS = ["", "   ", "\r\n", None]

# (sale time, finalized time, what happens): times as an import might have left them.
BAD_TIMES: list[tuple[object, object, str]] = [
    (f"{DAY} 10:00:00", "garbage", "unreadable_row"),
    (f"{DAY} 10:00:00", f"{DAY} 25:00:00", "unreadable_row"),
    (f"{DAY} 10:00:00", 20261120, "unreadable_row"),
    (f"{DAY} 10:00:00", "", "not_finalized"),
    (f"{DAY} 10:00:00", "9999-12-31 23:30:00", "unreadable_row"),
    (f"{DAY} 10:00:00", "0000-00-00 00:00:00", "unreadable_row"),
    (f"{DAY} 10:00:00", f"{DAY}T10:00:00+25:00", "unreadable_row"),
    (f"{DAY} 10:00:00", f"{DAY} 10:00:00 ", "request"),  # a trailing space is still a time
    ("garbage", "garbage", "unplaced"),
    (20261120, "", "unplaced"),
    ("", None, "unplaced"),
]

BAD_TOTALS: list[tuple[object, str]] = [
    ("NaN", "unreadable_row"),
    ("sNaN", "unreadable_row"),
    ("-Infinity", "unreadable_row"),
    ("n/a", "unreadable_row"),
    ("12,50", "unreadable_row"),
    ("1e999999", "unreadable_row"),  # SQLite's numeric affinity makes it infinity
    ("-0", "request"),
    (" 19.99 ", "request"),
]

# SQL expressions for text that is not UTF-8, per column.
BAD_ENCODINGS: list[tuple[str, str]] = [
    ("first_name", "CAST(X'4a6fe9' AS TEXT)"),
    ("last_name", "CAST(X'c3' AS TEXT)"),
    ("email", "CAST(X'6b696de9406578616d706c652e636f6d' AS TEXT)"),
    ("first_name", "X'ff00fe'"),  # a BLOB where text goes
]


@dataclass
class Corpus:
    """What was written, and what a store must see for it."""

    expected: dict[str, str] = field(default_factory=dict)  # transaction id -> decision
    addresses: dict[str, str] = field(default_factory=dict)  # To address -> transaction id
    names: dict[str, str] = field(default_factory=dict)  # transaction id -> display name
    unplaced: int = 0

    @property
    def requested(self) -> int:
        return sum(1 for v in self.expected.values() if v == "request")


class _Writer:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.next = 1

    def row(
        self,
        first: str | None,
        last: str | None,
        email: str | None,
        *,
        created: object = f"{DAY} 10:00:00",
        finalized: object = f"{DAY} 10:00:00",
        total: object = "100.00",
        raw: dict[str, str] | None = None,
    ) -> str:
        """One customer and their one sale; ``raw`` puts SQL expressions in customer columns."""
        n = self.next
        self.next += 1
        customer = f"H{n:04d}"
        columns = {"first_name": "?", "last_name": "?", "email": "?"} | (raw or {})
        values = [v for k, v in zip(("first_name", "last_name", "email"), (first, last, email),
                                    strict=True) if columns[k] == "?"]  # fmt: skip
        self.db.execute(
            "INSERT INTO customers (id, first_name, last_name, email, language, "
            f"include_in_communications, unsubscribed) VALUES (?, {columns['first_name']}, "
            f"{columns['last_name']}, {columns['email']}, 'en', 1, 0)",
            [customer, *values],
        )
        self.db.execute(
            "INSERT INTO transactions (id, customer_id, location_id, employee_id, created_at, "
            "finalized_at, total, kind) VALUES (?, ?, 1, 1, ?, ?, ?, 'sale')",
            [n, customer, created, finalized, total],
        )
        return str(n)


def write_corpus(pos_path: Path) -> Corpus:
    """Fill the (empty, preset-schema) POS at ``pos_path``; returns what must come out."""
    writer = _Writer(pos_path)
    corpus = Corpus()
    addresses = cycle(VALID_ADDRESSES)
    for first, last in NAMES:
        for _ in range(4):
            address = next(addresses).format(n=writer.next)
            tid = writer.row(first, last, address)
            _expect_sent(corpus, tid, address, first, last)
    for address in INVALID_ADDRESSES:
        for first, last in NAMES[:4]:
            corpus.expected[writer.row(first, last, address)] = "invalid_email"
    for empty in NO_ADDRESS:
        corpus.expected[writer.row("Kim", "Jansen", empty)] = "no_email"
    for created, finalized, outcome in BAD_TIMES:
        for first, last in NAMES[:3]:
            address = f"time.{writer.next}@example.com"
            tid = writer.row(first, last, address, created=created, finalized=finalized)
            if outcome == "unplaced":
                corpus.unplaced += 1
            elif outcome == "request":
                _expect_sent(corpus, tid, address, first, last)
            else:
                corpus.expected[tid] = outcome
    for total, outcome in BAD_TOTALS:
        for first, last in NAMES[:3]:
            address = f"total.{writer.next}@example.com"
            tid = writer.row(first, last, address, total=total)
            if outcome == "request":
                _expect_sent(corpus, tid, address, first, last)
            else:
                corpus.expected[tid] = outcome
    for column, expression in BAD_ENCODINGS:
        address = f"enc.{writer.next}@example.com"
        corpus.expected[writer.row("Kim", "Jansen", address, raw={column: expression})] = (
            "unreadable_row"
        )
    writer.db.commit()
    writer.db.close()
    return corpus


def _expect_sent(
    corpus: Corpus, tid: str, address: str, first: str | None, last: str | None
) -> None:
    corpus.expected[tid] = "request"
    corpus.addresses[accept(address).addr_spec] = tid
    parts = (clean_text(first), clean_text(last))
    corpus.names[tid] = display_name(" ".join(p for p in parts if p))
