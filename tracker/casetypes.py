"""Case types are data. These are the two Baton ships; admins can add more through the API.

A definition holds:
- ``statuses``: code, customer ``labels`` per locale, ``notify`` (tell the customer), ``terminal``
  (no further updates are expected once reached). Labels are data, keyed by the locales of the
  registry (``kernel.locales``) and read through its fallbacks (``de-AT`` -> ``de`` -> ``en``);
  the built-in types label every supported locale (tests/tracker/test_casetypes.py);
- ``initial_status``; ``default_cadence``; ``escalate_after`` (how long past due a late party is
  escalated; default one more cadence); ``handoff_accept_within``;
- ``deadline`` and ``deadline_status``: after this long the case moves on (a delayed bag is
  treated as lost after 21 days) and the customer is told how to claim.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.db import caches_of
from kernel.durations import parse_duration
from kernel.errors import Unprocessable
from kernel.locales import LOCALES
from tracker.models import CaseType


def _s(code: str, *, notify: bool = True, terminal: bool = False, **labels: str) -> dict:
    return {"code": code, "labels": labels, "notify": notify, "terminal": terminal}


BAGGAGE: dict[str, Any] = {
    "code": "baggage",
    "prefix": "BAG",
    "name": "Mishandled baggage",
    "definition": {
        "statuses": [
            _s("reported",
               en="Reported: we have opened a search for your bag",
               de="Gemeldet: wir suchen Ihr Gepäckstück",
               fr="Signalé : nous recherchons votre bagage",
               es="Notificado: estamos buscando su equipaje"),
            _s("tracing", notify=False,
               en="We are tracing your bag across the airlines' systems",
               de="Wir verfolgen Ihr Gepäck in den Systemen der Fluggesellschaften",
               fr="Nous recherchons votre bagage dans les systèmes des compagnies",
               es="Estamos rastreando su equipaje en los sistemas de las aerolíneas"),
            _s("located",
               en="Found: your bag has been located",
               de="Gefunden: Ihr Gepäckstück wurde gefunden",
               fr="Retrouvé : votre bagage a été localisé",
               es="Encontrado: hemos localizado su equipaje"),
            _s("in_transit",
               en="On its way: your bag is being forwarded",
               de="Unterwegs: Ihr Gepäck wird nachgesandt",
               fr="En route : votre bagage est acheminé",
               es="En camino: su equipaje está siendo reenviado"),
            _s("arrived",
               en="Arrived at your destination airport",
               de="Am Zielflughafen angekommen",
               fr="Arrivé à votre aéroport de destination",
               es="Ha llegado a su aeropuerto de destino"),
            _s("out_for_delivery",
               en="Out for delivery to you",
               de="In Zustellung zu Ihnen",
               fr="En cours de livraison",
               es="En reparto hacia usted"),
            _s("delivery_failed",
               en="We could not deliver: a new delivery will be arranged",
               de="Zustellung nicht möglich: eine neue Zustellung wird vereinbart",
               fr="Livraison impossible : une nouvelle livraison sera organisée",
               es="No pudimos entregar: se organizará una nueva entrega"),
            _s("delivered", terminal=True,
               en="Delivered",
               de="Zugestellt",
               fr="Livré",
               es="Entregado"),
            _s("presumed_lost",
               en="Declared lost: you can now claim compensation",
               de="Als verloren erklärt: Sie können jetzt eine Entschädigung beantragen",
               fr="Déclaré perdu : vous pouvez demander une indemnisation",
               es="Declarado perdido: ya puede reclamar una indemnización"),
            _s("closed", terminal=True,
               en="Closed",
               de="Abgeschlossen",
               fr="Clôturé",
               es="Cerrado"),
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
            _s("reported",
               en="Reported: we are looking into your parcel",
               de="Gemeldet: wir kümmern uns um Ihr Paket",
               fr="Signalé : nous examinons votre colis",
               es="Notificado: estamos revisando su paquete"),
            _s("investigating", notify=False,
               en="The carriers are investigating",
               de="Die Zusteller prüfen den Fall",
               fr="Les transporteurs enquêtent",
               es="Los transportistas están investigando"),
            _s("located",
               en="Found: your parcel has been located",
               de="Gefunden: Ihr Paket wurde gefunden",
               fr="Retrouvé : votre colis a été localisé",
               es="Encontrado: hemos localizado su paquete"),
            _s("out_for_delivery",
               en="Out for delivery to you",
               de="In Zustellung zu Ihnen",
               fr="En cours de livraison",
               es="En reparto hacia usted"),
            _s("delivery_failed",
               en="We could not deliver: a new delivery will be arranged",
               de="Zustellung nicht möglich: eine neue Zustellung wird vereinbart",
               fr="Livraison impossible : une nouvelle livraison sera organisée",
               es="No pudimos entregar: se organizará una nueva entrega"),
            _s("delivered", terminal=True,
               en="Delivered",
               de="Zugestellt",
               fr="Livré",
               es="Entregado"),
            _s("returned", terminal=True,
               en="Returned to the sender",
               de="An den Absender zurückgesandt",
               fr="Retourné à l'expéditeur",
               es="Devuelto al remitente"),
            _s("lost",
               en="Declared lost: you can now claim a refund",
               de="Als verloren erklärt: Sie können eine Erstattung beantragen",
               fr="Déclaré perdu : vous pouvez demander un remboursement",
               es="Declarado perdido: ya puede reclamar un reembolso"),
            _s("closed", terminal=True,
               en="Closed",
               de="Abgeschlossen",
               fr="Clôturé",
               es="Cerrado"),
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

    def label(self, status: str, locale: str | None) -> str:
        """A status in the customer's words: their locale, its language, English, else the code."""
        return LOCALES.label(self.statuses.get(status, {}).get("labels", {}), locale, missing=status)


# ---------------------------------------------------------------- the registry (types are rows)

_TYPE_CACHE_SECONDS = 30.0


async def case_type(*, session: AsyncSession, code: str) -> CaseTypeDef:
    """The parsed definition of a case type, cached briefly in the runtime's caches (types change rarely)."""
    cache = caches_of(session).case_types
    cached = cache.get(code, max_age=_TYPE_CACHE_SECONDS)
    if cached is not None:
        return cached
    row = await session.get(CaseType, code)
    if row is None:
        known = ", ".join((await session.scalars(select(CaseType.code).order_by(CaseType.code))).all())
        raise Unprocessable(f"Unknown case type {code!r}; known types: {known}.")
    parsed = CaseTypeDef.parse(code=row.code, prefix=row.prefix, name=row.name, definition=row.definition)
    return cache.put(code, parsed)
