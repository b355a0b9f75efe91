"""POS rows a night could not use as they came: unreadable (a column holding no value the
mapping understands) or repeated (one sale and customer in several rows with different
values). Both are decided, so no night stops for them; ``status`` lists them so that they are
not only in the log, with a few transaction ids to look up in the POS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from surveysync.ledger.schema import decisions
from surveysync.ledger.store import Ledger
from surveysync.rules import SkipReason

PROBLEM_REASONS = (SkipReason.UNREADABLE_ROW, SkipReason.REPEATED_ROW)
_SAMPLE = 5


@dataclass(frozen=True, slots=True)
class PosDataProblem:
    reason: str  # unreadable_row | repeated_row
    column: str | None  # the unreadable column; None for a repeated row
    count: int
    transaction_ids: tuple[str, ...]  # the first few, for support

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "column": self.column,
            "count": self.count,
            "transaction_ids": list(self.transaction_ids),
        }


def pos_data_problems(ledger: Ledger, since: datetime) -> list[PosDataProblem]:
    """The store's sales from ``since`` on whose latest decision is a POS data problem, by
    reason and column, most frequent first."""
    mine = (
        (decisions.c.store == ledger.store)
        & decisions.c.reason.in_([str(r) for r in PROBLEM_REASONS])
        & (decisions.c.sale_at >= since)
    )
    groups = (
        select(decisions.c.reason, decisions.c.detail, func.count().label("n"))
        .where(mine)
        .group_by(decisions.c.reason, decisions.c.detail)
        .order_by(func.count().desc(), decisions.c.reason, decisions.c.detail)
    )
    found: list[PosDataProblem] = []
    with ledger.reading() as conn:
        for reason, detail, count in conn.execute(groups).all():
            same = decisions.c.detail.is_(None) if detail is None else decisions.c.detail == detail
            ids = conn.scalars(
                select(decisions.c.transaction_id)
                .where(mine & (decisions.c.reason == reason) & same)
                .order_by(decisions.c.sale_at.desc(), decisions.c.transaction_id)
                .limit(_SAMPLE)
            )
            found.append(PosDataProblem(reason, detail, count, tuple(ids)))
    return found
