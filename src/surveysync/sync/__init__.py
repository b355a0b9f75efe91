"""One run over a window: stream sales -> decide -> claim -> render -> send -> settle.

The scheduler, ``sync``, ``backfill`` and ``demo`` all call ``run_sync``; the CLI only turns
its result and its errors into output and exit codes.

    request    what a run is asked (``SyncRequest``) and answers (``RunReport``, ``SyncError``)
    run        the lifecycle: window, start, the day loop newest first, how it ended
    context    ``RunContext``, the one small object the stages share
    days       one business day: read in chunks, decide, record skips, choose per person
    people     person keys and history; each address normalized once per sale
    delivery   claim, render, mark sending, send, settle
    resume     before the days: requests left by earlier runs, the provider's suppressions
    followups  after the days: detractor alerts and the daily digest

Days are decided newest first, so that a person who bought on Monday and on Wednesday is
asked about Wednesday (Monday is then ``duplicate_in_run``), and so that after nights off the
freshest visits are asked about first.

Order of proof, per business day: every sale's decision is written (skips in chunks, sends
together with their claim), every request of the day is settled, and only then is the day
marked covered.

Error tree::

    SyncError          the run failed; already covered days stay covered. ``retryable``
                       when the POS or the provider could not be reached (try again later)
"""

from surveysync.ledger.crashed import record_crashed_runs
from surveysync.sync.request import ProgressHook, RunReport, SyncError, SyncRequest
from surveysync.sync.run import DryRunProvider, run_exclusive, run_sync

__all__ = [
    "DryRunProvider",
    "ProgressHook",
    "RunReport",
    "SyncError",
    "SyncRequest",
    "record_crashed_runs",
    "run_exclusive",
    "run_sync",
]
