"""Case types are data. These are the two Baton ships; admins can add more through the API.

A definition holds:
- ``statuses``: code, customer ``labels`` per locale, ``notify`` (tell the customer), ``terminal``
  (no further updates are expected once reached). Labels are data, keyed by the locales of the
  registry (``kernel.locales``) and read through its fallbacks (``de-AT`` -> ``de`` -> ``en``);
  the built-in types label every supported locale (tests/tracker/test_casetypes.py);
- ``initial_status``; ``default_cadence``; ``escalate_after`` (how long past due a late party is
  escalated; default one more cadence); ``ladder`` (the escalation ladder, ``tracker.ladders``;
  absent: the built-in two steps, late then escalated one ``escalate_after`` later); ``handoff_accept_within``;
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
from tracker.ladders import Ladder
from kernel.durations import parse_duration
from kernel.errors import Unprocessable
from kernel.locales import LOCALES
from tracker.models import CaseType


def _s(code: str, *, notify: bool = True, terminal: bool = False, **labels: str) -> dict:
    return {"code": code, "labels": labels, "notify": notify, "terminal": terminal}


def _rule(code: str, *, kind: str, counts_from: str, within: str, remind_before: str | None = None,
          fallback: str | None = None, applies: dict[str, Any] | None = None,
          **texts: tuple[str, str]) -> dict[str, Any]:
    """A right or deadline as data: see ``tracker.rights`` for the fields."""
    return {"code": code, "kind": kind, "from": counts_from, "fallback": fallback, "within": within,
            "remind_before": remind_before, "applies": applies or {},
            "labels": {locale: label for locale, (label, _) in texts.items()},
            "how": {locale: how for locale, (_, how) in texts.items()}}


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
               es="Notificado: estamos buscando su equipaje",
               it="Segnalato: abbiamo avviato la ricerca del suo bagaglio",
               nl="Gemeld: we zoeken uw bagage",
               pt="Comunicado: estamos à procura da sua bagagem",
               pl="Zgłoszono: szukamy Państwa bagażu"),
            _s("tracing", notify=False,
               en="We are tracing your bag across the airlines' systems",
               de="Wir verfolgen Ihr Gepäck in den Systemen der Fluggesellschaften",
               fr="Nous recherchons votre bagage dans les systèmes des compagnies",
               es="Estamos rastreando su equipaje en los sistemas de las aerolíneas",
               it="Stiamo rintracciando il suo bagaglio nei sistemi delle compagnie aeree",
               nl="We sporen uw bagage op in de systemen van de luchtvaartmaatschappijen",
               pt="Estamos a localizar a sua bagagem nos sistemas das companhias aéreas",
               pl="Szukamy Państwa bagażu w systemach linii lotniczych"),
            _s("located",
               en="Found: your bag has been located",
               de="Gefunden: Ihr Gepäckstück wurde gefunden",
               fr="Retrouvé : votre bagage a été localisé",
               es="Encontrado: hemos localizado su equipaje",
               it="Trovato: il suo bagaglio è stato localizzato",
               nl="Gevonden: uw bagage is gelokaliseerd",
               pt="Encontrada: a sua bagagem foi localizada",
               pl="Odnaleziono: wiemy, gdzie jest Państwa bagaż"),
            _s("in_transit",
               en="On its way: your bag is being forwarded",
               de="Unterwegs: Ihr Gepäck wird nachgesandt",
               fr="En route : votre bagage est acheminé",
               es="En camino: su equipaje está siendo reenviado",
               it="In viaggio: il suo bagaglio viene inoltrato",
               nl="Onderweg: uw bagage wordt doorgestuurd",
               pt="A caminho: a sua bagagem está a ser reencaminhada",
               pl="W drodze: Państwa bagaż jest przesyłany dalej"),
            _s("arrived",
               en="Arrived at your destination airport",
               de="Am Zielflughafen angekommen",
               fr="Arrivé à votre aéroport de destination",
               es="Ha llegado a su aeropuerto de destino",
               it="Arrivato all'aeroporto di destinazione",
               nl="Aangekomen op uw bestemmingsluchthaven",
               pt="Chegou ao seu aeroporto de destino",
               pl="Dotarł na lotnisko docelowe"),
            _s("out_for_delivery",
               en="Out for delivery to you",
               de="In Zustellung zu Ihnen",
               fr="En cours de livraison",
               es="En reparto hacia usted",
               it="In consegna",
               nl="Wordt bij u bezorgd",
               pt="Em distribuição para si",
               pl="W doręczeniu"),
            _s("delivery_failed",
               en="We could not deliver: a new delivery will be arranged",
               de="Zustellung nicht möglich: eine neue Zustellung wird vereinbart",
               fr="Livraison impossible : une nouvelle livraison sera organisée",
               es="No pudimos entregar: se organizará una nueva entrega",
               it="Consegna non riuscita: verrà organizzata una nuova consegna",
               nl="Bezorging mislukt: er wordt een nieuwe bezorging geregeld",
               pt="Não foi possível entregar: será combinada uma nova entrega",
               pl="Nie udało się doręczyć: ustalimy nowe doręczenie"),
            _s("delivered", terminal=True,
               en="Delivered",
               de="Zugestellt",
               fr="Livré",
               es="Entregado",
               it="Consegnato",
               nl="Bezorgd",
               pt="Entregue",
               pl="Doręczono"),
            _s("presumed_lost",
               en="Declared lost: you can now claim compensation",
               de="Als verloren erklärt: Sie können jetzt eine Entschädigung beantragen",
               fr="Déclaré perdu : vous pouvez demander une indemnisation",
               es="Declarado perdido: ya puede reclamar una indemnización",
               it="Dichiarato smarrito: ora può chiedere un risarcimento",
               nl="Verloren verklaard: u kunt nu een schadevergoeding aanvragen",
               pt="Declarada perdida: já pode pedir uma indemnização",
               pl="Uznano za utracony: mogą Państwo ubiegać się o odszkodowanie"),
            _s("closed", terminal=True,
               en="Closed",
               de="Abgeschlossen",
               fr="Clôturé",
               es="Cerrado",
               it="Chiuso",
               nl="Gesloten",
               pt="Encerrado",
               pl="Zamknięto"),
        ],
        "initial_status": "reported",
        "default_cadence": "PT6H",
        "escalate_after": None,
        "handoff_accept_within": "PT2H",
        "deadline": "P21D",
        "deadline_status": "presumed_lost",
        # Rights and deadlines (tracker.rights): the Montreal Convention (arts. 17, 22, 31, 35) and
        # the US DOT checked-bag fee refund (14 CFR 260, in force since late 2024). Calendar days
        # count to the end of the day in the customer's time zone; hours count exactly.
        "rules": [
            _rule("presumed_lost", kind="lost", counts_from="opened", within="P21D",
                  en=("Your bag counts as lost if it is not delivered within 21 days",
                      "You can then claim for its contents as a loss."),
                  de=("Ihr Gepäckstück gilt als verloren, wenn es nicht binnen 21 Tagen zugestellt wird",
                      "Dann können Sie den Inhalt als Verlust geltend machen."),
                  fr=("Votre bagage est considéré comme perdu s'il n'est pas livré sous 21 jours",
                      "Vous pouvez alors réclamer son contenu comme une perte."),
                  es=("Su equipaje se considera perdido si no se entrega en 21 días",
                      "Entonces puede reclamar su contenido como pérdida."),
                  it=("Il suo bagaglio è considerato smarrito se non viene consegnato entro 21 giorni",
                      "Potrà allora chiedere il risarcimento del contenuto come perdita."),
                  nl=("Uw bagage geldt als verloren als ze niet binnen 21 dagen is bezorgd",
                      "U kunt de inhoud dan als verlies claimen."),
                  pt=("A sua bagagem é considerada perdida se não for entregue no prazo de 21 dias",
                      "Pode então reclamar o conteúdo como perda."),
                  pl=("Bagaż uznaje się za utracony, jeśli nie zostanie doręczony w ciągu 21 dni",
                      "Można wtedy dochodzić roszczenia za jego zawartość jako utraconą.")),
            _rule("damage_complaint", kind="filing", counts_from="delivered", within="P7D", remind_before="P2D",
                  en=("Written complaint if the bag or its contents are damaged",
                      "File a claim of kind damage below, with photos, within 7 days of receiving the bag."),
                  de=("Schriftliche Beschwerde bei Schäden am Gepäck oder Inhalt",
                      "Reichen Sie unten einen Schadensanspruch mit Fotos ein, binnen 7 Tagen nach Erhalt."),
                  fr=("Réclamation écrite si le bagage ou son contenu est endommagé",
                      "Déposez ci-dessous une réclamation pour dommage, avec photos, sous 7 jours après réception."),
                  es=("Reclamación por escrito si el equipaje o su contenido están dañados",
                      "Presente abajo una reclamación por daños, con fotos, en 7 días desde la recepción."),
                  it=("Reclamo scritto se il bagaglio o il suo contenuto sono danneggiati",
                      "Presenti qui sotto una richiesta per danni, con foto, entro 7 giorni dalla riconsegna."),
                  nl=("Schriftelijke klacht bij schade aan de bagage of de inhoud",
                      "Dien hieronder binnen 7 dagen na ontvangst een claim voor schade in, met foto's."),
                  pt=("Reclamação por escrito se a bagagem ou o seu conteúdo estiverem danificados",
                      "Apresente abaixo um pedido por danos, com fotografias, até 7 dias após a receção."),
                  pl=("Pisemna reklamacja w razie uszkodzenia bagażu lub jego zawartości",
                      "Prosimy złożyć poniżej roszczenie za uszkodzenie, ze zdjęciami, w ciągu 7 dni od odbioru.")),
            _rule("delay_complaint", kind="filing", counts_from="delivered", within="P21D", remind_before="P3D",
                  en=("Written complaint for the delay and your expenses",
                      "File a claim of kind delay or interim expenses below, with receipts, within 21 days."),
                  de=("Schriftliche Beschwerde wegen der Verspätung und Ihrer Ausgaben",
                      "Reichen Sie unten einen Anspruch für Verspätung oder Auslagen mit Belegen ein, binnen 21 Tagen."),
                  fr=("Réclamation écrite pour le retard et vos frais",
                      "Déposez ci-dessous une réclamation pour retard ou frais, avec justificatifs, sous 21 jours."),
                  es=("Reclamación por escrito por el retraso y sus gastos",
                      "Presente abajo una reclamación por retraso o gastos, con recibos, en 21 días."),
                  it=("Reclamo scritto per il ritardo e le sue spese",
                      "Presenti qui sotto una richiesta per ritardo o spese sostenute, con ricevute, entro 21 giorni."),
                  nl=("Schriftelijke klacht over de vertraging en uw onkosten",
                      "Dien hieronder binnen 21 dagen een claim voor vertraging of onkosten in, met bonnen."),
                  pt=("Reclamação por escrito pelo atraso e pelas suas despesas",
                      "Apresente abaixo um pedido por atraso ou despesas, com recibos, no prazo de 21 dias."),
                  pl=("Pisemna reklamacja z powodu opóźnienia i Państwa wydatków",
                      "Prosimy złożyć poniżej roszczenie za opóźnienie lub wydatki, z paragonami, w ciągu 21 dni.")),
            _rule("legal_action", kind="filing", counts_from="arrived", fallback="opened", within="P2Y",
                  en=("Legal action, if your claim is not settled", "Court proceedings must start within 2 years."),
                  de=("Klage, falls Ihr Anspruch nicht geregelt wird", "Eine Klage muss binnen 2 Jahren erhoben werden."),
                  fr=("Action en justice, si votre réclamation n'est pas réglée",
                      "Une action doit être engagée dans les 2 ans."),
                  es=("Acción judicial, si su reclamación no se resuelve",
                      "La demanda debe presentarse en un plazo de 2 años."),
                  it=("Azione legale, se la sua richiesta non viene definita",
                      "L'azione in giudizio va avviata entro 2 anni."),
                  nl=("Juridische stappen, als uw claim niet wordt afgehandeld",
                      "Een rechtszaak moet binnen 2 jaar worden aangespannen."),
                  pt=("Ação judicial, se o seu pedido não for resolvido",
                      "A ação em tribunal tem de ser proposta no prazo de 2 anos."),
                  pl=("Droga sądowa, jeśli roszczenie nie zostanie rozpatrzone",
                      "Pozew trzeba wnieść w ciągu 2 lat.")),
            *(_rule(code, kind="refund", counts_from="arrived", within=within, applies=applies,
                    en=("Refund of your checked-bag fee if the bag is not delivered by then",
                        "The airline refunds the fee you paid for this bag; you need not ask."),
                    de=("Erstattung Ihrer Gepäckgebühr, wenn das Gepäck bis dahin nicht zugestellt ist",
                        "Die Fluggesellschaft erstattet die Gebühr für dieses Gepäckstück; Sie müssen nichts tun."),
                    fr=("Remboursement des frais de bagage s'il n'est pas livré d'ici là",
                        "La compagnie rembourse les frais payés pour ce bagage, sans démarche de votre part."),
                    es=("Reembolso de la tarifa de equipaje si no se entrega para entonces",
                        "La aerolínea reembolsa lo que pagó por este equipaje; no tiene que pedirlo."),
                    it=("Rimborso della tariffa bagaglio se il bagaglio non viene consegnato entro allora",
                        "La compagnia aerea rimborsa quanto ha pagato per questo bagaglio; non deve chiederlo."),
                    nl=("Terugbetaling van uw bagagetoeslag als de bagage dan nog niet is bezorgd",
                        "De luchtvaartmaatschappij betaalt de toeslag voor deze bagage terug; "
                        "u hoeft er niet om te vragen."),
                    pt=("Reembolso da taxa de bagagem se a bagagem não for entregue até lá",
                        "A companhia aérea reembolsa o que pagou por esta bagagem; não precisa de pedir."),
                    pl=("Zwrot opłaty za bagaż rejestrowany, jeśli do tego czasu nie zostanie doręczony",
                        "Linia lotnicza zwraca opłatę za ten bagaż; nie trzeba o to prosić."))
              for code, within, applies in (
                  ("dot_fee_refund_domestic", "PT12H", {"international": False}),
                  ("dot_fee_refund_international", "PT15H", {"international": True, "longest_flight_hours_at_most": 12}),
                  ("dot_fee_refund_long_haul", "PT30H", {"international": True, "longest_flight_hours_over": 12}),
              )),
        ],
        "liability_cap": {"amount": "1519", "currency": "XDR", "labels": {
            "en": "The airline's liability for a bag is capped at about 1,519 SDR (special drawing rights).",
            "de": "Die Haftung der Fluggesellschaft je Gepäck ist auf etwa 1.519 SZR (Sonderziehungsrechte) begrenzt.",
            "fr": "La responsabilité de la compagnie est limitée à environ 1 519 DTS (droits de tirage spéciaux).",
            "es": "La responsabilidad de la aerolínea se limita a unos 1.519 DEG (derechos especiales de giro).",
            "it": "La responsabilità della compagnia aerea per un bagaglio è limitata a circa 1.519 DSP "
                  "(diritti speciali di prelievo).",
            "nl": "De aansprakelijkheid van de luchtvaartmaatschappij per bagage is beperkt tot ongeveer 1.519 SDR "
                  "(bijzondere trekkingsrechten).",
            "pt": "A responsabilidade da companhia aérea por cada bagagem está limitada a cerca de 1519 DSE "
                  "(direitos de saque especiais).",
            "pl": "Odpowiedzialność linii lotniczej za bagaż jest ograniczona do około 1519 SDR "
                  "(specjalnych praw ciągnienia).",
        }},
        "claim_answer_within": "P30D",
        "claim_escalate_after": "P7D",
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
               es="Notificado: estamos revisando su paquete",
               it="Segnalato: stiamo verificando il suo pacco",
               nl="Gemeld: we onderzoeken uw pakket",
               pt="Comunicado: estamos a verificar a sua encomenda",
               pl="Zgłoszono: sprawdzamy Państwa paczkę"),
            _s("investigating", notify=False,
               en="The carriers are investigating",
               de="Die Zusteller prüfen den Fall",
               fr="Les transporteurs enquêtent",
               es="Los transportistas están investigando",
               it="I corrieri stanno indagando",
               nl="De vervoerders onderzoeken het",
               pt="As transportadoras estão a investigar",
               pl="Przewoźnicy wyjaśniają sprawę"),
            _s("located",
               en="Found: your parcel has been located",
               de="Gefunden: Ihr Paket wurde gefunden",
               fr="Retrouvé : votre colis a été localisé",
               es="Encontrado: hemos localizado su paquete",
               it="Trovato: il suo pacco è stato localizzato",
               nl="Gevonden: uw pakket is gelokaliseerd",
               pt="Encontrada: a sua encomenda foi localizada",
               pl="Odnaleziono: wiemy, gdzie jest Państwa paczka"),
            _s("out_for_delivery",
               en="Out for delivery to you",
               de="In Zustellung zu Ihnen",
               fr="En cours de livraison",
               es="En reparto hacia usted",
               it="In consegna",
               nl="Wordt bij u bezorgd",
               pt="Em distribuição para si",
               pl="W doręczeniu"),
            _s("delivery_failed",
               en="We could not deliver: a new delivery will be arranged",
               de="Zustellung nicht möglich: eine neue Zustellung wird vereinbart",
               fr="Livraison impossible : une nouvelle livraison sera organisée",
               es="No pudimos entregar: se organizará una nueva entrega",
               it="Consegna non riuscita: verrà organizzata una nuova consegna",
               nl="Bezorging mislukt: er wordt een nieuwe bezorging geregeld",
               pt="Não foi possível entregar: será combinada uma nova entrega",
               pl="Nie udało się doręczyć: ustalimy nowe doręczenie"),
            _s("delivered", terminal=True,
               en="Delivered",
               de="Zugestellt",
               fr="Livré",
               es="Entregado",
               it="Consegnato",
               nl="Bezorgd",
               pt="Entregue",
               pl="Doręczono"),
            _s("returned", terminal=True,
               en="Returned to the sender",
               de="An den Absender zurückgesandt",
               fr="Retourné à l'expéditeur",
               es="Devuelto al remitente",
               it="Restituito al mittente",
               nl="Teruggestuurd naar de afzender",
               pt="Devolvida ao remetente",
               pl="Zwrócono do nadawcy"),
            _s("lost",
               en="Declared lost: you can now claim a refund",
               de="Als verloren erklärt: Sie können eine Erstattung beantragen",
               fr="Déclaré perdu : vous pouvez demander un remboursement",
               es="Declarado perdido: ya puede reclamar un reembolso",
               it="Dichiarato smarrito: ora può chiedere un rimborso",
               nl="Verloren verklaard: u kunt nu een terugbetaling aanvragen",
               pt="Declarada perdida: já pode pedir um reembolso",
               pl="Uznano za utraconą: mogą Państwo ubiegać się o zwrot"),
            _s("closed", terminal=True,
               en="Closed",
               de="Abgeschlossen",
               fr="Clôturé",
               es="Cerrado",
               it="Chiuso",
               nl="Gesloten",
               pt="Encerrado",
               pl="Zamknięto"),
        ],
        "initial_status": "reported",
        "default_cadence": "PT24H",
        "escalate_after": None,
        "handoff_accept_within": "PT4H",
        "deadline": "P14D",
        "deadline_status": "lost",
        # No rules: a parcel's rights come from the shipper's contract and the carrier's terms, which
        # differ from one contract to the next; an operator adds its own as data (README, "Rights").
        "rules": [],
        "claim_answer_within": "P14D",
        "claim_escalate_after": "P7D",
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
    rules: tuple[dict[str, Any], ...] = ()
    liability_cap: dict[str, Any] | None = None
    claim_answer_within: dt.timedelta | None = None
    claim_escalate_after: dt.timedelta | None = None
    ladder: Ladder | None = None  # the escalation ladder its parties climb (tracker.ladders), parsed once

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
            rules=tuple(definition.get("rules") or ()),
            liability_cap=definition.get("liability_cap"),
            claim_answer_within=parse_duration(definition["claim_answer_within"])
            if definition.get("claim_answer_within") else None,
            claim_escalate_after=parse_duration(definition["claim_escalate_after"])
            if definition.get("claim_escalate_after") else None,
            ladder=Ladder.parse(definition["ladder"]) if definition.get("ladder") else None,
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
