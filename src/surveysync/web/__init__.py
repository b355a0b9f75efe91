"""The survey page: ``surveysync web``, its own process beside the nightly daemon, sharing
its ledger (SQLite on the same machine, or a chain's PostgreSQL from a small public host).

``app``       ``create_app(settings, ledger, clock, hooks)``: the Starlette application, the
              shared ``SurveySite``, the periodic sweep and the ``Hooks`` alerts connect to
``routes``    the addresses: score links, the form, unsubscribe (with RFC 8058 one-click),
              the review invitation, ``/healthz``
``pages``     the HTML per locale (built in: en, nl, es, ko, sl; operators may add or
              replace), checked before the first visit
``security``  Content-Security-Policy and friends, capped bodies, the cross-site check
``limits``    the per-email rate limit
``server``    ``serve(settings, host, port)``: uvicorn on one socket, until stopped

What a visit means (a person's answer, or a link scanner's pass) is decided by the pure
``surveysync.answer_rules``; ``ledger.answers`` keeps every visit and the answer.

Never sends email and never reads the POS; the only customer data it shows is the store's
name and the sale's location (never an address, never a name).
"""

from surveysync.web.app import Clock, Hooks, SurveySite, create_app
from surveysync.web.server import WebError, serve

__all__ = ["Clock", "Hooks", "SurveySite", "WebError", "create_app", "serve"]
