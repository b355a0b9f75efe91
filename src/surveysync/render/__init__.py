"""Render stage: a claimed request becomes a ``SurveyEmail`` in the customer's language.

``templates``  built-in and operator templates, each checked before the first email
``tokens``     signed score and unsubscribe links (pure)
``message``    the email's parts and headers
``mime``       its RFC 5322 bytes, one fixed MIME shape written directly
``renderer``   puts them together for one request

Never sends and never touches the ledger.
"""

from surveysync.render.message import (
    ProviderTemplate,
    Recipient,
    RenderError,
    SurveyEmail,
    clean_text,
    deliverable,
)
from surveysync.render.renderer import Renderer
from surveysync.render.templates import TemplateProblem, TemplateSet
from surveysync.render.tokens import InvalidLink, LinkClaim, LinkProblem, LinkSigner, token_from

__all__ = [
    "InvalidLink",
    "LinkClaim",
    "LinkProblem",
    "LinkSigner",
    "ProviderTemplate",
    "Recipient",
    "RenderError",
    "Renderer",
    "SurveyEmail",
    "TemplateProblem",
    "TemplateSet",
    "clean_text",
    "deliverable",
    "token_from",
]
