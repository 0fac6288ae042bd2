"""Case types are data. These are the two Baton ships; admins can add more through the API.

A definition holds:
- ``statuses``: code, customer ``labels`` per locale, ``notify`` (tell the customer), ``terminal``
  (no further updates are expected once reached);
- ``initial_status``; ``default_cadence``; ``escalate_after`` (how long past due a late party is
  escalated; default one more cadence); ``handoff_accept_within``;
- ``deadline`` and ``deadline_status``: after this long the case moves on (a delayed bag is
  treated as lost after 21 days) and the customer is told how to claim.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.durations import parse_duration
from kernel.errors import Unprocessable
from tracker.models import CaseType


def _s(code: str, en: str, de: str, fr: str, es: str, *, notify: bool = True, terminal: bool = False) -> dict:
    return {"code": code, "labels": {"en": en, "de": de, "fr": fr, "es": es}, "notify": notify, "terminal": terminal}


BAGGAGE: dict[str, Any] = {
    "code": "baggage",
    "prefix": "BAG",
    "name": "Mishandled baggage",
    "definition": {
        "statuses": [
            _s("reported", "Reported: we have opened a search for your bag",
               "Gemeldet: wir suchen Ihr Gepäckstück", "Signalé : nous recherchons votre bagage",
               "Notificado: estamos buscando su equipaje"),
            _s("tracing", "We are tracing your bag across the airlines' systems",
               "Wir verfolgen Ihr Gepäck in den Systemen der Fluggesellschaften",
               "Nous recherchons votre bagage dans les systèmes des compagnies",
               "Estamos rastreando su equipaje en los sistemas de las aerolíneas", notify=False),
            _s("located", "Found: your bag has been located", "Gefunden: Ihr Gepäckstück wurde gefunden",
               "Retrouvé : votre bagage a été localisé", "Encontrado: hemos localizado su equipaje"),
            _s("in_transit", "On its way: your bag is being forwarded", "Unterwegs: Ihr Gepäck wird nachgesandt",
               "En route : votre bagage est acheminé", "En camino: su equipaje está siendo reenviado"),
            _s("arrived", "Arrived at your destination airport", "Am Zielflughafen angekommen",
               "Arrivé à votre aéroport de destination", "Ha llegado a su aeropuerto de destino"),
            _s("out_for_delivery", "Out for delivery to you", "In Zustellung zu Ihnen",
               "En cours de livraison", "En reparto hacia usted"),
            _s("delivered", "Delivered", "Zugestellt", "Livré", "Entregado", terminal=True),
            _s("presumed_lost", "Declared lost: you can now claim compensation",
               "Als verloren erklärt: Sie können jetzt eine Entschädigung beantragen",
               "Déclaré perdu : vous pouvez demander une indemnisation",
               "Declarado perdido: ya puede reclamar una indemnización"),
            _s("closed", "Closed", "Abgeschlossen", "Clôturé", "Cerrado", terminal=True),
        ],
        "initial_status": "reported",
        "default_cadence": "PT6H",
        "escalate_after": None,
        "handoff_accept_within": "PT2H",
        "deadline": "P21D",
        "deadline_status": "presumed_lost",
    },
}

PARCEL: dict[str, Any] = {
    "code": "parcel",
    "prefix": "PCL",
    "name": "Missing or damaged parcel",
    "definition": {
        "statuses": [
            _s("reported", "Reported: we are looking into your parcel", "Gemeldet: wir kümmern uns um Ihr Paket",
               "Signalé : nous examinons votre colis", "Notificado: estamos revisando su paquete"),
            _s("investigating", "The carriers are investigating", "Die Zusteller prüfen den Fall",
               "Les transporteurs enquêtent", "Los transportistas están investigando", notify=False),
            _s("located", "Found: your parcel has been located", "Gefunden: Ihr Paket wurde gefunden",
               "Retrouvé : votre colis a été localisé", "Encontrado: hemos localizado su paquete"),
            _s("out_for_delivery", "Out for delivery to you", "In Zustellung zu Ihnen",
               "En cours de livraison", "En reparto hacia usted"),
            _s("delivered", "Delivered", "Zugestellt", "Livré", "Entregado", terminal=True),
            _s("returned", "Returned to the sender", "An den Absender zurückgesandt", "Retourné à l'expéditeur",
               "Devuelto al remitente", terminal=True),
            _s("lost", "Declared lost: you can now claim a refund",
               "Als verloren erklärt: Sie können eine Erstattung beantragen",
               "Déclaré perdu : vous pouvez demander un remboursement",
               "Declarado perdido: ya puede reclamar un reembolso"),
            _s("closed", "Closed", "Abgeschlossen", "Clôturé", "Cerrado", terminal=True),
        ],
        "initial_status": "reported",
        "default_cadence": "PT24H",
        "escalate_after": None,
        "handoff_accept_within": "PT4H",
        "deadline": "P14D",
        "deadline_status": "lost",
    },
}

BUILTIN = (BAGGAGE, PARCEL)


@dataclass(frozen=True, slots=True)
class CaseTypeDef:
    """A case type's definition, parsed once."""

    code: str
    prefix: str
    name: str
    statuses: dict[str, dict[str, Any]]
    initial_status: str
    default_cadence: dt.timedelta
    escalate_after: dt.timedelta | None
    handoff_accept_within: dt.timedelta
    deadline: dt.timedelta | None
    deadline_status: str | None

    @classmethod
    def parse(cls, *, code: str, prefix: str, name: str, definition: dict[str, Any]) -> CaseTypeDef:
        statuses = {s["code"]: s for s in definition["statuses"]}
        deadline = definition.get("deadline")
        escalate = definition.get("escalate_after")
        return cls(
            code=code,
            prefix=prefix,
            name=name,
            statuses=statuses,
            initial_status=definition["initial_status"],
            default_cadence=parse_duration(definition["default_cadence"]),
            escalate_after=parse_duration(escalate) if escalate else None,
            handoff_accept_within=parse_duration(definition.get("handoff_accept_within") or "PT2H"),
            deadline=parse_duration(deadline) if deadline else None,
            deadline_status=definition.get("deadline_status"),
        )

    def label(self, status: str, locale: str) -> str:
        labels = self.statuses.get(status, {}).get("labels", {})
        return labels.get(locale) or labels.get("en") or status


# ---------------------------------------------------------------- the registry (types are rows)

_TYPE_CACHE_SECONDS = 30.0
_type_cache: dict[str, tuple[float, CaseTypeDef]] = {}


async def case_type(*, session: AsyncSession, code: str) -> CaseTypeDef:
    """The parsed definition of a case type, cached briefly (types change rarely)."""
    cached = _type_cache.get(code)
    if cached and time.monotonic() - cached[0] < _TYPE_CACHE_SECONDS:
        return cached[1]
    row = await session.get(CaseType, code)
    if row is None:
        known = ", ".join((await session.scalars(select(CaseType.code).order_by(CaseType.code))).all())
        raise Unprocessable(f"Unknown case type {code!r}; known types: {known}.")
    parsed = CaseTypeDef.parse(code=row.code, prefix=row.prefix, name=row.name, definition=row.definition)
    _type_cache[code] = (time.monotonic(), parsed)
    return parsed


def forget_case_types() -> None:
    _type_cache.clear()
