"""What the store manager's alert emails say, in each built-in language.

Plain format strings, filled with already-cleaned values by ``compose``; the wording never
depends on a count's plural form (Slovenian has four), so a number always stands after a
label or a colon. Dates are written with babel, in each language's own pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from babel.dates import format_date


@dataclass(frozen=True, slots=True)
class Wording:
    subject: str  # {score} {location}
    subject_no_location: str  # {score}
    intro_named: str  # {name} {store} {score}
    intro_anonymous: str  # {store} {score}
    comment: str
    no_comment: str
    score: str
    first_name: str
    customer_id: str
    transaction_id: str
    sale_date: str
    location: str
    employee: str
    follow_up: str
    footer: str  # {store}
    digest_subject: str  # {date} {count}
    digest_intro: str  # {store} {date} {max}
    date_pattern: str  # babel (CLDR) pattern


WORDING = {
    "en": Wording(
        subject="Unhappy customer at {location}: score {score}",
        subject_no_location="Unhappy customer: score {score}",
        intro_named="{name} gave {store} a score of {score} out of 10.",
        intro_anonymous="A customer gave {store} a score of {score} out of 10.",
        comment="Comment",
        no_comment="(no comment)",
        score="Score",
        first_name="First name",
        customer_id="Customer ID",
        transaction_id="POS transaction",
        sale_date="Sale date",
        location="Location",
        employee="Technician",
        follow_up="To follow up, look the customer up in the POS by customer ID or transaction.",
        footer="Automatic alert from surveysync for {store}.",
        digest_subject="Unhappy customers on {date}: {count}",
        digest_intro="Customers who gave {store} a score of {max} or lower on {date}:",
        date_pattern="MMMM d, y",
    ),
    "nl": Wording(
        subject="Ontevreden klant ({location}): score {score}",
        subject_no_location="Ontevreden klant: score {score}",
        intro_named="{name} heeft {store} een {score} gegeven, op een schaal van 0 tot 10.",
        intro_anonymous="Een klant heeft {store} een {score} gegeven, op een schaal van 0 tot 10.",
        comment="Opmerking",
        no_comment="(geen opmerking)",
        score="Score",
        first_name="Voornaam",
        customer_id="Klantnummer",
        transaction_id="Transactienummer (kassa)",
        sale_date="Verkoopdatum",
        location="Vestiging",
        employee="Medewerker",
        follow_up="Zoek de klant in het kassasysteem op via het klant- of transactienummer "
        "om contact op te nemen.",
        footer="Automatische melding van surveysync voor {store}.",
        digest_subject="Ontevreden klanten op {date}: {count}",
        digest_intro="Klanten die {store} op {date} een {max} of lager gaven:",
        date_pattern="d MMMM y",
    ),
    "es": Wording(
        subject="Cliente insatisfecho en {location}: puntuación {score}",
        subject_no_location="Cliente insatisfecho: puntuación {score}",
        intro_named="{name} ha valorado {store} con un {score} sobre 10.",
        intro_anonymous="Un cliente ha valorado {store} con un {score} sobre 10.",
        comment="Comentario",
        no_comment="(sin comentario)",
        score="Puntuación",
        first_name="Nombre",
        customer_id="N.º de cliente",
        transaction_id="N.º de transacción (TPV)",
        sale_date="Fecha de venta",
        location="Tienda",
        employee="Atendido por",
        follow_up="Para hacer el seguimiento, busque al cliente en el TPV por su número de "
        "cliente o de transacción.",
        footer="Aviso automático de surveysync para {store}.",
        digest_subject="Clientes insatisfechos del {date}: {count}",
        digest_intro="Clientes que valoraron {store} con un {max} o menos el {date}:",
        date_pattern="d 'de' MMMM 'de' y",
    ),
    "ko": Wording(
        subject="불만족 고객 알림 ({location}): {score}점",
        subject_no_location="불만족 고객 알림: {score}점",
        intro_named="{name} 고객님이 {store}에 10점 만점에 {score}점을 주셨습니다.",
        intro_anonymous="한 고객님이 {store}에 10점 만점에 {score}점을 주셨습니다.",
        comment="의견",
        no_comment="(의견 없음)",
        score="점수",
        first_name="이름",
        customer_id="고객 번호",
        transaction_id="POS 거래 번호",
        sale_date="판매일",
        location="매장",
        employee="담당 직원",
        follow_up="후속 조치를 하시려면 고객 번호나 거래 번호로 POS에서 고객을 찾아보세요.",
        footer="{store}의 surveysync 자동 알림입니다.",
        digest_subject="{date} 불만족 고객: {count}명",
        digest_intro="{date}에 {store}에 {max}점 이하를 준 고객:",
        date_pattern="y년 M월 d일",
    ),
    "sl": Wording(
        subject="Nezadovoljna stranka ({location}): ocena {score}",
        subject_no_location="Nezadovoljna stranka: ocena {score}",
        intro_named="Stranka {name} je trgovini {store} dala oceno {score} od 10.",
        intro_anonymous="Stranka je trgovini {store} dala oceno {score} od 10.",
        comment="Komentar",
        no_comment="(brez komentarja)",
        score="Ocena",
        first_name="Ime",
        customer_id="Številka stranke",
        transaction_id="Številka transakcije (POS)",
        sale_date="Datum prodaje",
        location="Poslovalnica",
        employee="Zaposleni",
        follow_up="Za nadaljnje ukrepanje poiščite stranko v blagajniškem sistemu po številki "
        "stranke ali transakcije.",
        footer="Samodejno obvestilo sistema surveysync za {store}.",
        digest_subject="Nezadovoljne stranke, {date}: {count}",
        digest_intro="Stranke, ki so {date} trgovini {store} dale oceno {max} ali manj:",
        date_pattern="d. M. y",
    ),
}
FALLBACK = "en"


def locale_for(default_locale: str) -> str:
    """The store's default language when its wording is built in, else English."""
    return default_locale if default_locale in WORDING else FALLBACK


def written_date(day: date, locale: str) -> str:
    return str(format_date(day, WORDING[locale].date_pattern, locale=locale))
