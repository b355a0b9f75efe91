"""Alerts: the store manager hears of a detractor's answer, once, as soon as it is final.

``[alerts] mode`` picks one small email per detractor (``each``), one email a day listing
the previous store day's detractors (``digest``, with ``digest = "daily"``), or ``both``.

``wording``   what the emails say, in en, nl, es, ko and sl
``compose``   the emails (``SurveyEmail`` without unsubscribe headers), customer values inert
``delivery``  ``send_due``: queue what is due in the ledger, send what waits, settle

Entry point: ``send_due(ledger, provider, settings, now, *, digests=False) -> AlertCounts``,
called by the nightly run after the night's surveys with ``digests=True``, and by the survey
page's periodic tick without. The ledger keeper is ``surveysync.ledger.alerts``.

This package never writes a survey request or an answer, never emails anyone but the
addresses in ``[alerts] to``, and never sends one alert twice.
"""

from surveysync.alerts.compose import AlertComposer, clean_comment
from surveysync.alerts.delivery import (
    ALERT_HORIZON,
    IN_FLIGHT_LIMIT,
    AlertCounts,
    retry_pause,
    send_due,
)

__all__ = [
    "ALERT_HORIZON",
    "IN_FLIGHT_LIMIT",
    "AlertComposer",
    "AlertCounts",
    "clean_comment",
    "retry_pause",
    "send_due",
]
