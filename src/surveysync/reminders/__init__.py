"""Reminders: one review reminder some days after the survey to those who answered and were
invited to review but did not follow the link, and (optionally) the survey once more to
those who did not answer. Each at most once per survey, never to anyone who unsubscribed.

``surveysync.reminder_rules``  who gets which reminder when (pure, like ``rules``)
``compose``                    the emails, in the survey's language, with its headers
``delivery``                   the night's pass: repeat or hold what a crash left in
                               flight, cancel what can no longer go out, send what is due
The ledger keeper is ``surveysync.ledger.reminders``; a survey request settled as sent
hands its address to its reminders there (``Requests.settle(..., reminders=plan)``).

Entry points: ``send_due_reminders(ledger, provider, settings, clock, *, stop=None) ->
ReminderCounts``, called by the nightly run after the night's surveys and alerts; and
``cancel_impossible(ledger, settings, now) -> int`` for the survey page's periodic tick,
which forgets the address of a reminder that became impossible (an unsubscribe, an answer)
within a minute instead of by the night.

This package never touches cooldowns (a reminder is contact for nobody's cooldown), never
writes a survey request or an answer, and never sends one reminder twice.
"""

from surveysync.reminder_rules import ReminderKind, ReminderPlan, reminder_plan
from surveysync.reminders.compose import ReminderComposer
from surveysync.reminders.delivery import ReminderCounts, cancel_impossible, send_due_reminders

__all__ = [
    "ReminderComposer",
    "ReminderCounts",
    "ReminderKind",
    "ReminderPlan",
    "cancel_impossible",
    "reminder_plan",
    "send_due_reminders",
]
