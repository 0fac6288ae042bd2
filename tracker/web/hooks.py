"""Webhooks from Twilio: delivery status callbacks and inbound SMS and WhatsApp (status by message)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from notifications.models import Notification
from notifications.transports import TransportError
from tracker.customer import on_permanent_failure
from tracker.sms_inbound import claim_message, handle_inbound_sms
from kernel.errors import Forbidden
from tracker.schemas import Problem
from tracker.web.deps import db_session, runtime

log = logging.getLogger("baton.hooks")
router = APIRouter(prefix="/hooks/twilio", tags=["twilio"])


async def twilio_form(request: Request) -> dict[str, str]:
    """The form Twilio posted, accepted only with a valid ``X-Twilio-Signature``."""
    settings = runtime(request).settings
    form = await request.form()
    params = {key: str(value) for key, value in form.multi_items()}
    signature = request.headers.get("x-twilio-signature", "")
    token = settings.twilio_auth_token
    if not token or not signature:
        raise Forbidden("Missing or unverifiable X-Twilio-Signature.")
    validator = RequestValidator(token)
    query = f"?{request.url.query}" if request.url.query else ""
    if settings.public_base_url:
        # The URL Twilio was given, and only it: the request's own Host header is the sender's to choose, and
        # would let a signature for another deployment on the same Twilio account (staging) be replayed here.
        candidates = {f"{settings.public_base_url}{request.url.path}{query}"}
    else:
        candidates = {f"{settings.callback_base_url()}{request.url.path}{query}", str(request.url)}
    if not any(validator.validate(url, params, signature) for url in candidates):
        raise Forbidden("Invalid X-Twilio-Signature.")
    return params


@router.post("/status", status_code=204, responses={403: {"description": "Invalid signature"}})
async def twilio_status_callback(
    request: Request, params: dict[str, str] = Depends(twilio_form), session: AsyncSession = Depends(db_session)
) -> Response:
    """Twilio reports what became of an SMS or WhatsApp message: delivered, or failed (with its error code)."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    now = runtime(request).clock.now()
    row = await session.scalar(select(Notification).where(Notification.provider_id == sid,
                                                     Notification.channel.in_(("sms", "whatsapp"))))
    if row is None:
        log.info("status callback for an unknown message")
        return Response(status_code=204)
    if status in ("delivered", "read") and row.state in ("sent", "sending"):  # WhatsApp may report "read" first
        await session.execute(
            update(Notification).where(Notification.id == row.id)
            .values(state="delivered", delivered_at=now, updated_at=now).execution_options(synchronize_session=False)
        )
    elif status in ("failed", "undelivered") and row.state in ("sent", "sending", "delivered"):
        code = params.get("ErrorCode")
        await session.execute(
            update(Notification).where(Notification.id == row.id)
            .values(state="failed", last_error=f"Twilio {status}, error {code}", updated_at=now)
            .execution_options(synchronize_session=False)
        )
        error = TransportError(f"Twilio {status}", permanent=True, code=int(code) if code and code.isdigit() else None)
        await on_permanent_failure(session, row, error, now)
    await session.commit()
    return Response(status_code=204)


@router.post("/sms", responses={200: {"content": {"application/xml": {}}}, 403: {"description": "Invalid signature"},
                                429: {"model": Problem, "content": {"application/problem+json": {}},
                                      "description": "Too many text messages from this sender."}})
async def twilio_inbound_sms(
    request: Request, params: dict[str, str] = Depends(twilio_form), session: AsyncSession = Depends(db_session)
) -> Response:
    """A customer texted Baton's number (SMS, or WhatsApp: ``From: whatsapp:+E164``): answer with TwiML,
    which Twilio sends back on the channel the message came by (status, references, or "passed on")."""
    rt = runtime(request)
    sender = params.get("From", "")
    limit, at = rt.limits.inbound_sms, rt.limits.now()
    limit.check(sender, at, detail="Too many text messages from this number.")
    twiml = MessagingResponse()
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if sid and not await claim_message(session=session, sid=sid, now=rt.clock.now()):
        # Already answered: Twilio would send a reply again, so the replay gets none.
        await session.rollback()
        return Response(str(twiml), media_type="application/xml")
    limit.hit(sender, at)
    reply = await handle_inbound_sms(session=session, sender=sender, text=params.get("Body", "")[:1600],
                                     now=rt.clock.now(), base_url=rt.settings.callback_base_url())
    await session.commit()
    twiml.message(reply)
    return Response(str(twiml), media_type="application/xml")
