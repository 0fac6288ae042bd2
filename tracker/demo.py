"""``baton demo``: the lost-bag story, seeded through the same services the API uses.

Ada Lovelace flew Lufthansa LH400 Frankfurt→New York JFK and connected to United UA123 to
Boston. Her bag missed the connection in Frankfurt. United (which holds the customer) opened the
case; Lufthansa found the bag with the help of Swissport, its ground handler in Frankfurt, and
flew it to New York; United took custody at JFK and handed it to FastCourier for delivery.
FastCourier accepted, said the bag was out for delivery, and has been silent since.

Ada's second bag (tag 0016123457) took the same way one flight earlier and shows the delivery
Baton arranges: from her status page Ada asked for delivery to her hotel between 18:00 and 20:00
(one of FastCourier's published slots), FastCourier accepted, went out with her PIN sent to her
phone, and delivered with a photo of the bag at the front desk, her PIN and the scanned tag.

Every partner update is signed with the partner's own Ed25519 key (written to ``var/demo-keys``)
exactly as a partner's client would sign it, so ``baton verify`` checks real signatures, and the
keys can be used with ``baton-partner`` against the running demo.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from PIL import Image, ImageDraw
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.db import settings_of
from kernel.storage import BlobStore, open_store
from partners import service as partner_service
from partners.models import Partner
from partners.client import BatonSigner, generate_ed25519_keypair, load_private_key, public_key_pem
from partners.schemas import KeyIn, PartnerIn
from partners.signatures import KeyCache, KeyMaterial, parse_signature_headers, verify_request
from tracker import access, cases, delivery, evidence, handoffs, updates
from tracker.delivery import DeliveryRequestIn
from tracker.principals import Principal, create_staff_token
from tracker.schemas import AcceptIn, CaseIn, EventIn, HandoffIn

PARTNERS = [
    {"id": "ua", "name": "United Airlines", "kind": "airline", "ops_email": "baggage-ops@ua.example",
     "ops_phone": "+17735550100", "default_cadence": "PT6H", "timezone": "America/Chicago"},
    {"id": "lh", "name": "Lufthansa", "kind": "airline", "ops_email": "baggage-ops@lh.example",
     "ops_phone": "+4969123456", "default_cadence": "PT6H", "timezone": "Europe/Berlin"},
    {"id": "swissport-fra", "name": "Swissport Frankfurt", "kind": "ground_handler",
     "ops_email": "fra-lostandfound@swissport.example", "default_cadence": "PT12H", "timezone": "Europe/Berlin",
     "calendar": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}},
    {"id": "fastcourier", "name": "FastCourier", "kind": "courier", "ops_email": "dispatch@fastcourier.example",
     "ops_phone": "+12125550199", "default_cadence": "PT4H", "timezone": "America/New_York",
     "delivery_slots": ["09:00-12:00", "14:00-17:00", "18:00-20:00"]},
]
ADA = {"name": "Ada Lovelace", "phone": "+14155550100", "email": "ada@example.com", "locale": "en",
       "timezone": "America/New_York"}
ADAS_PARTIES = [
    {"partner": "ua", "role": "owner"},
    {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
    {"partner": "swissport-fra", "role": "handler"},
    {"partner": "fastcourier", "role": "courier"},
]
HOTEL = {"address": {"line1": "The Langham, 250 Franklin Street", "city": "Boston", "postcode": "02110",
                     "country": "US"},
         "phone": "+14155550100", "instructions": "Leave it with the front desk; the room is under Lovelace."}


@dataclass
class DemoResult:
    ref: str
    status_url: str
    admin_token: str | None
    keys_dir: Path
    extra_refs: list[str]
    delivered_url: str = ""  # the status link of Ada's second bag, delivered (its ref is extra_refs[0])


class _Signer:
    """Signs a synthetic request for each partner update, as the partner's client would."""

    def __init__(self, keys_dir: Path, base_url: str) -> None:
        self.keys_dir = keys_dir
        self.base_url = base_url
        self.private: dict[str, bytes] = {}
        self.public: dict[str, str] = {}
        self.cache = KeyCache()

    def keypair(self, partner_id: str) -> str:
        """Load or create the partner's demo key; answer its public key PEM."""
        path = self.keys_dir / f"{partner_id}.key"
        if path.exists():
            private = path.read_bytes()
        else:
            private, _ = generate_ed25519_keypair()
            path.write_bytes(private)
            path.chmod(0o600)
        self.private[partner_id] = private
        self.public[partner_id] = public_key_pem(load_private_key(private)).decode()
        return self.public[partner_id]

    def principal(self, partner_id: str, *, path: str, body: dict[str, Any], at: dt.datetime) -> Principal:
        raw = json.dumps(body, separators=(",", ":")).encode()
        request = httpx.Request("POST", f"{self.base_url}{path}", content=raw,
                                headers={"content-type": "application/json"})
        signer = BatonSigner.ed25519(f"{partner_id}-demo", self.private[partner_id], clock=at.timestamp)
        signer.sign_request(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        signed = parse_signature_headers(headers)
        material = KeyMaterial(
            keyid=f"{partner_id}-demo", partner_id=partner_id, alg="ed25519",
            public_key=self.public[partner_id], secret=None,
        )
        verified = verify_request(
            method="POST", target_uri=str(request.url), headers=headers, body=raw, signed=signed,
            material=material, now=at.timestamp(), max_skew=300, keys=self.cache,
        )
        return Principal(kind="partner", name=partner_id, partner_id=partner_id, signature=verified.record(raw))


async def seed(*, session: AsyncSession, now: dt.datetime, base_url: str, var_dir: Path,
               store: BlobStore | None = None) -> DemoResult:
    """Seed partners, keys, a demo admin token and the story. Safe to call only on an empty database.

    ``store``: where the delivery photo goes (default: the one the session's settings name).
    """
    keys_dir = var_dir / "demo-keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    signer = _Signer(keys_dir, base_url)
    staff = Principal(kind="staff", name="demo", role="admin")
    start = now - dt.timedelta(days=3, hours=2)

    for spec in PARTNERS:
        await partner_service.register_partner(session=session, payload=PartnerIn.model_validate(spec), now=start)
        await partner_service.add_key(
            session=session, partner_id=spec["id"],
            payload=KeyIn(keyid=f"{spec['id']}-demo", alg="ed25519", public_key=signer.keypair(spec["id"])), now=start,
        )

    async def as_partner(partner_id: str, path: str, body: dict[str, Any], at: dt.datetime) -> Principal:
        return signer.principal(partner_id, path=path, body=body, at=at)

    opening = {
        "type": "baggage", "title": "Delayed bag, LH400 FRA-JFK then UA123", "customer": ADA, "owner": "ua",
        "parties": ADAS_PARTIES, "external_refs": {"worldtracer": "JFKUA12345", "bag_tag": "0016123456"},
    }
    t = start
    case = await cases.open_case(
        session=session, principal=await as_partner("ua", "/v1/cases", opening, t),
        payload=CaseIn.model_validate(opening), now=t, base_url=base_url,
    )
    ref = case.ref
    path = f"/v1/cases/{ref}/events"

    async def update(partner_id: str, at: dt.datetime, **fields: Any) -> None:
        body = {k: v for k, v in fields.items() if v is not None}
        await updates.post_update(
            session=session, principal=await as_partner(partner_id, path, body, at), ref=ref,
            payload=EventIn.model_validate(body), now=at,
        )

    async def handoff(sender: str, receiver: str, at: dt.datetime, note: str) -> int:
        body = {"to": receiver, "note": note, "accept_within": "PT2H"}
        out = await handoffs.request_handoff(
            session=session, principal=await as_partner(sender, f"/v1/cases/{ref}/handoffs", body, at),
            ref=ref, payload=HandoffIn.model_validate(body), now=at,
        )
        return out.id

    async def accept(receiver: str, handoff_id: int, at: dt.datetime) -> None:
        await handoffs.accept_handoff(
            session=session,
            principal=await as_partner(receiver, f"/v1/cases/{ref}/handoffs/{handoff_id}/accept", {}, at),
            ref=ref, handoff_id=handoff_id, payload=AcceptIn(), now=at,
        )

    t += dt.timedelta(minutes=20)
    await update("lh", t, status="tracing", internal_note="Tag 0016123456 not loaded on LH400; checking FRA transfer.",
                 next_update_by=(t + dt.timedelta(hours=5)).isoformat())
    t += dt.timedelta(hours=4)
    await update("lh", t, internal_note="Asked Swissport FRA to search transfer belt 14.")
    t += dt.timedelta(hours=2)
    await update("swissport-fra", t, location="FRA",
                 internal_note="Bag found at transfer belt 14, short-connected; handed to LH baggage services.")
    t += dt.timedelta(hours=1)
    await update("lh", t, status="located", location="FRA",
                 message="Good news: your bag was found in Frankfurt. We are putting it on the next flight to New York.")
    t += dt.timedelta(hours=10)
    await update("lh", t, status="in_transit", location="FRA",
                 message="Your bag is on LH400 to New York JFK tonight.",
                 eta=(t + dt.timedelta(hours=9)).isoformat())
    t += dt.timedelta(hours=9)
    handoff_id = await handoff("lh", "ua", t, "LH400 arrived JFK; bag at LH baggage office for UA.")
    t += dt.timedelta(minutes=50)
    await accept("ua", handoff_id, t)
    await update("ua", t, status="arrived", location="JFK",
                 message="Your bag has arrived in New York. We are arranging delivery to your address.")
    t += dt.timedelta(hours=3)
    handoff_id = await handoff("ua", "fastcourier", t, "Deliver to the customer's hotel in Boston.")
    t += dt.timedelta(minutes=40)
    await accept("fastcourier", handoff_id, t)
    t += dt.timedelta(hours=1)
    await update("fastcourier", t, status="out_for_delivery",
                 message="Your bag is with FastCourier and on its way to you.",
                 next_update_by=(t + dt.timedelta(hours=4)).isoformat())
    # FastCourier has been silent since: its update was due four hours later.

    own_store = store is None
    store = store or open_store(settings_of(session))
    try:
        second, second_url = await _second_bag(session=session, sign=as_partner, start=start, now=now,
                                               base_url=base_url, store=store)
    finally:
        if own_store:
            await store.close()
    extra = [second, *await _background_cases(session=session, staff=staff, sign=as_partner, now=now,
                                              base_url=base_url)]
    admin_token = await create_staff_token(session=session, name="demo-admin", role="admin", now=now)
    await session.flush()
    return DemoResult(ref=ref, status_url=case.status_url or "", admin_token=admin_token, keys_dir=keys_dir,
                      extra_refs=extra, delivered_url=second_url)


async def _second_bag(
    *, session: AsyncSession, sign: Any, start: dt.datetime, now: dt.datetime, base_url: str, store: BlobStore
) -> tuple[str, str]:
    """Ada's second bag: delivered to her hotel in the evening slot she chose, with a photo and her PIN."""
    opening = {
        "type": "baggage", "title": "Second delayed bag, LH400 FRA-JFK then UA123", "customer": ADA, "owner": "ua",
        "parties": [p for p in ADAS_PARTIES if p["partner"] != "swissport-fra"],
        "external_refs": {"worldtracer": "JFKUA12346", "bag_tag": "0016123457"},
    }
    t = start + dt.timedelta(minutes=5)
    case = await cases.open_case(session=session, principal=await sign("ua", "/v1/cases", opening, t),
                                 payload=CaseIn.model_validate(opening), now=t, base_url=base_url)
    ref = case.ref

    async def update(partner_id: str, at: dt.datetime, **fields: Any) -> None:
        body = {k: v for k, v in fields.items() if v is not None}
        await updates.post_update(session=session, principal=await sign(partner_id, f"/v1/cases/{ref}/events",
                                                                       body, at),
                                  ref=ref, payload=EventIn.model_validate(body), now=at)

    t += dt.timedelta(hours=6)
    await update("lh", t, status="located", location="FRA",
                 message="Your second bag was found in Frankfurt and flies to New York on the next LH400.",
                 eta=(t + dt.timedelta(hours=14)).isoformat())
    t += dt.timedelta(hours=3)
    await update("lh", t, status="in_transit", location="FRA", message="Your second bag is on LH400 to JFK.")
    t += dt.timedelta(hours=10)
    await update("lh", t, status="arrived", location="JFK",
                 message="Your second bag is in New York. Tell us where and when to deliver it.")
    # Ada chooses FastCourier's evening slot on her status page.
    t += dt.timedelta(hours=1)
    found = await access.load_case(session=session, principal=Principal(kind="staff", name="demo", role="admin"),
                                   ref=ref, for_update=True)
    courier = await session.get(Partner, "fastcourier")
    assert courier is not None
    evening = next(s for s in delivery.slots_of(courier, now=t)
                   if s.start.astimezone(ZoneInfo(courier.timezone)).hour == 18)
    await delivery.request_delivery(
        session=session, case=found[0], actor="customer", now=t,
        payload=DeliveryRequestIn.model_validate({**HOTEL, "window": {"start": evening.start, "end": evening.end}}),
    )
    t += dt.timedelta(minutes=25)
    path = f"/v1/cases/{ref}/delivery"
    await delivery.accept_delivery(session=session, principal=await sign("fastcourier", f"{path}/accept", {}, t),
                                   ref=ref, now=t)
    t = evening.start + dt.timedelta(minutes=10)
    await update("fastcourier", t, status="out_for_delivery", message="Your bag is on the van to your hotel.",
                 eta=(evening.start + dt.timedelta(minutes=75)).isoformat())
    current = await delivery.of_case(session, found[0])
    assert current is not None and current.pin is not None
    t = evening.start + dt.timedelta(minutes=68)
    kept = await _door_photo(store)
    proof_body = {"pin": current.pin, "bag_tag": "0016123457", "photo": kept.original_sha256}
    courier_principal = await sign("fastcourier", f"{path}/proof", proof_body, t)
    attachment = await evidence.record(
        session=session, case=found[0], kept=kept, kind="proof_of_delivery", visibility="public", note=None,
        actor=courier_principal.actor, partner_id="fastcourier", now=t,
    )
    await delivery.complete(
        session=session, case=found[0], delivery=current, principal=courier_principal, pin=current.pin,
        bag_tag="0016123457", now=t,
        attachments=[{"role": "photo", "id": attachment.id, "sha256": attachment.sha256}],
    )
    assert t < now, "the second bag is delivered before the demo's present"
    return ref, case.status_url or ""


async def _door_photo(store: BlobStore) -> evidence.Kept:
    """A drawn photo of the bag at the hotel desk, with the GPS position a phone would add (Baton strips it)."""
    image = Image.new("RGB", (960, 720), (214, 205, 190))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 470, 960, 720), fill=(120, 82, 52))  # the desk
    draw.rounded_rectangle((330, 170, 630, 520), radius=28, fill=(24, 62, 120))  # the suitcase
    draw.rounded_rectangle((430, 120, 530, 180), radius=14, outline=(40, 40, 40), width=12)  # its handle
    draw.rectangle((600, 330, 700, 380), fill=(250, 250, 250))  # the bag tag
    exif = Image.Exif()
    exif[0x0110] = "Courier phone"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (42.0, 21.0, 15.2), "W", (71.0, 3.0, 27.9)
    with tempfile.TemporaryDirectory(prefix="baton-demo-") as folder:
        path = Path(folder) / "door.jpg"
        image.save(path, "JPEG", quality=85, exif=exif)
        original = hashlib.sha256(path.read_bytes()).hexdigest()
        return await evidence.keep(store=store, path=path, original_sha256=original, filename="door.jpg")


async def _background_cases(
    *, session: AsyncSession, staff: Principal, sign: Any, now: dt.datetime, base_url: str
) -> list[str]:
    """A few more cases so lists, search and scorecards have something to show."""
    refs = []
    stories = [
        ("Bag left behind at FRA, LH902 to LHR", "lh", "swissport-fra", "Grace Hopper", "+14155550111",
         "grace@example.com", "en", "America/Los_Angeles", "LHRLH55501", dt.timedelta(hours=30), "located"),
        ("Koffer fehlt nach LH1234 FRA-MUC", "lh", "swissport-fra", "Emmy Noether", "+4915112345678",
         "emmy@example.de", "de", "Europe/Berlin", "MUCLH77120", dt.timedelta(hours=8), "tracing"),
        ("Damaged suitcase on UA88 EWR-FRA", "ua", "lh", "Alan Turing", "+442079460958",
         "alan@example.co.uk", "en", "Europe/London", "FRAUA40021", dt.timedelta(days=2), "in_transit"),
    ]
    for title, owner, other, name, phone, email, locale, zone, wt, age, status in stories:
        opened_at = now - age
        out = await cases.open_case(
            session=session, principal=staff,
            payload=CaseIn.model_validate({
                "type": "baggage", "title": title, "owner": owner,
                "customer": {"name": name, "phone": phone, "email": email, "locale": locale, "timezone": zone},
                "parties": [{"partner": owner, "role": "owner", "responsible": True},
                            {"partner": other, "role": "handler" if other == "swissport-fra" else "carrier"}],
                "external_refs": {"worldtracer": wt},
            }),
            now=opened_at, base_url=base_url,
        )
        body = {"status": status, "message": "We are on it and will update you within six hours."}
        at = opened_at + dt.timedelta(minutes=30)
        await updates.post_update(
            session=session, principal=await sign(owner, f"/v1/cases/{out.ref}/events", body, at), ref=out.ref,
            payload=EventIn.model_validate(body), now=at,
        )
        refs.append(out.ref)
    parcel = await cases.open_case(
        session=session, principal=staff,
        payload=CaseIn.model_validate({
            "type": "parcel", "title": "Parcel 1Z999 not delivered", "owner": "fastcourier",
            "customer": {"name": "Katherine Johnson", "email": "katherine@example.com", "locale": "es",
                         "timezone": "America/New_York"},
            "parties": [{"partner": "fastcourier", "role": "owner", "responsible": True}],
            "external_refs": {"tracking": "1Z999AA10123456784"},
        }),
        now=now - dt.timedelta(hours=5), base_url=base_url,
    )
    refs.append(parcel.ref)
    return refs
