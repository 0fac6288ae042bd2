"""Console sign-in: a stateless but unforgeable session cookie, and CSRF tokens for every form.

The cookie is ``payload.mac``: the payload is base64url JSON of the session id, the staff name and
role, the SHA-256 of the staff token and the expiry; the MAC is HMAC-SHA256 under
``settings.effective_secret_key()``. Nothing is stored per session, so any number of replicas can
check it, and on every request:

1. the MAC must verify and the expiry (12 hours after sign-in, on the injected clock) must be ahead;
2. the session must not have been signed out here. Sign-outs are remembered in the process, like
   the rate limits: behind several replicas a cookie copied before sign-out stays usable on the
   others until it expires (the browser itself has dropped it);
3. the token whose hash the cookie carries must still be a valid staff token: revoking the token
   ends every session signed in with it, and the role comes from the token row, not the cookie.

CSRF: every form carries ``HMAC(secret, session id + "csrf")``; a POST without a valid one is
refused with 403 before anything is read or written. The cookie is also ``SameSite=Strict``. The
sign-in form, before there is a session, is tied the same way to a random id kept in a short-lived
cookie of its own, so another site cannot sign a browser in behind its user's back.

Single sign-on (``oidc``): a session signed in through the identity provider is a staff_tokens row
of its own (``tracker.principals.start_sign_in``) whose token nobody ever sees; the cookie carries
its hash like any other, so step 3 applies unchanged, and the row's expiry and sign-out's
revocation hold on every replica. While the browser is away at the provider, the attempt (state,
nonce, PKCE verifier) waits in a third cookie, signed like the session's, ``SameSite=Lax``: the
provider's redirect back is a navigation from another site, which a Strict cookie would miss.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Forbidden, Unauthorized
from tracker.principals import Principal, authenticate_staff_hash, hash_token
from tracker.staff_sign_in import SignInAttempt
from tracker.web.deps import runtime

SESSION_COOKIE = "baton_console"
SIGN_IN_COOKIE = "baton_console_signin"
ATTEMPT_COOKIE = "baton_console_oidc"
COOKIE_PATH = "/console"
ATTEMPT_PATH = "/console/oidc"
SESSION_TTL = dt.timedelta(hours=12)
SIGN_IN_TTL = dt.timedelta(hours=1)
ATTEMPT_TTL = dt.timedelta(minutes=10)  # time to sign in at the provider
CSRF_FIELD = "csrf"


class SignInRequired(Exception):
    """No valid session: the console answers with a redirect to its sign-in page."""


@dataclass(frozen=True, slots=True)
class Claims:
    sid: str
    name: str
    role: str
    token_hash: str
    expires_at: int  # Unix seconds


@dataclass(frozen=True, slots=True)
class Staff:
    """The signed-in staff member of one console request."""

    principal: Principal
    sid: str
    csrf: str
    expires_at: int
    token_hash: str

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def display_name(self) -> str:
        return self.principal.display_name or self.principal.name

    @property
    def role(self) -> str:
        return self.principal.role or "agent"

    def can(self, role: str) -> bool:
        return self.principal.has_role(role)


# ---------------------------------------------------------------- sealing


def _mac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def seal(claims: Claims, *, secret: str) -> str:
    """The cookie value for ``claims``."""
    payload = _b64(json.dumps([claims.sid, claims.name, claims.role, claims.token_hash, claims.expires_at],
                              separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, 'console-session:' + payload)}"


def unseal(value: str | None, *, secret: str, now: dt.datetime) -> Claims | None:
    """The claims of a cookie value whose MAC verifies and that has not expired; else None."""
    if not value or value.count(".") != 1 or len(value) > 2000:
        return None
    payload, mac = value.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(secret, "console-session:" + payload).encode()):
        return None
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        sid, name, role, token_hash, expires_at = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        return None
    if not isinstance(expires_at, int) or expires_at <= now.timestamp():
        return None
    return Claims(sid=str(sid), name=str(name), role=str(role), token_hash=str(token_hash), expires_at=expires_at)


def csrf_token(*, secret: str, sid: str) -> str:
    return _mac(secret, sid + "csrf")


def csrf_ok(*, secret: str, sid: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), csrf_token(secret=secret, sid=sid).encode())


class SignedOutSessions:
    """Session ids signed out in this process, kept until their cookies would have expired anyway."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}

    def add(self, sid: str, expires_at: int, now: dt.datetime) -> None:
        stamp = now.timestamp()
        for stale in [s for s, until in self._until.items() if until <= stamp]:
            del self._until[stale]
        self._until[sid] = expires_at

    def __contains__(self, sid: str) -> bool:
        return sid in self._until


def signed_out_sessions(request: Request) -> SignedOutSessions:
    state = request.app.state
    if not hasattr(state, "console_signed_out"):
        state.console_signed_out = SignedOutSessions()
    return state.console_signed_out


# ---------------------------------------------------------------- cookies


def _secure(request: Request) -> bool:
    return (runtime(request).settings.public_base_url or "").startswith("https://")


def _secret(request: Request) -> str:
    return runtime(request).settings.effective_secret_key()


def start_session(
    response: Response, request: Request, *, principal: Principal, token: str, lasts: dt.timedelta = SESSION_TTL
) -> None:
    """Set the session cookie of a successful sign-in (and drop the sign-in form's cookie)."""
    rt = runtime(request)
    expires = rt.clock.now() + lasts
    claims = Claims(sid=secrets.token_urlsafe(18), name=principal.name, role=principal.role or "agent",
                    token_hash=hash_token(token), expires_at=int(expires.timestamp()))
    response.set_cookie(SESSION_COOKIE, seal(claims, secret=_secret(request)), max_age=int(lasts.total_seconds()),
                        path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))
    response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


def end_session(response: Response, request: Request, staff: Staff | None) -> None:
    """Forget the session here and clear the cookie in the browser."""
    if staff is not None:
        signed_out_sessions(request).add(staff.sid, staff.expires_at, runtime(request).clock.now())
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


def sign_in_form_id(request: Request) -> tuple[str, bool]:
    """The sign-in form's id (from its cookie, else a new one) and whether it is new."""
    current = request.cookies.get(SIGN_IN_COOKIE, "")
    if 16 <= len(current) <= 64 and current.replace("-", "").replace("_", "").isalnum():
        return current, False
    return secrets.token_urlsafe(18), True


def remember_sign_in_form(response: Response, request: Request, form_id: str) -> None:
    response.set_cookie(SIGN_IN_COOKIE, form_id, max_age=int(SIGN_IN_TTL.total_seconds()), path=COOKIE_PATH,
                        httponly=True, samesite="strict", secure=_secure(request))


def sign_in_csrf(request: Request, form_id: str) -> str:
    return csrf_token(secret=_secret(request), sid="sign-in:" + form_id)


def remember_attempt(response: Response, request: Request, attempt: SignInAttempt) -> None:
    """Keep a single sign-on attempt in the browser, signed, until the provider sends it back."""
    payload = _b64(json.dumps([attempt.state, attempt.nonce, attempt.code_verifier, attempt.next, attempt.expires_at],
                              separators=(",", ":")).encode())
    value = f"{payload}.{_mac(_secret(request), 'console-oidc:' + payload)}"
    response.set_cookie(ATTEMPT_COOKIE, value, max_age=int(ATTEMPT_TTL.total_seconds()), path=ATTEMPT_PATH,
                        httponly=True, samesite="lax", secure=_secure(request))


def recall_attempt(request: Request) -> SignInAttempt | None:
    """The browser's single sign-on attempt, if its cookie verifies and has not expired."""
    value = request.cookies.get(ATTEMPT_COOKIE)
    if not value or value.count(".") != 1 or len(value) > 2000:
        return None
    payload, mac = value.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(_secret(request), "console-oidc:" + payload).encode()):
        return None
    try:
        state, nonce, verifier, next_page, expires_at = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, TypeError, binascii.Error):
        return None
    if not isinstance(expires_at, int) or expires_at <= runtime(request).clock.now().timestamp():
        return None
    return SignInAttempt(state=str(state), nonce=str(nonce), code_verifier=str(verifier), next=str(next_page),
                         expires_at=expires_at)


def forget_attempt(response: Response, request: Request) -> None:
    """An attempt is answered once: its cookie goes with the answer, whatever the outcome."""
    response.delete_cookie(ATTEMPT_COOKIE, path=ATTEMPT_PATH, httponly=True, samesite="lax", secure=_secure(request))


def check_sign_in_csrf(request: Request, given: object) -> None:
    form_id = request.cookies.get(SIGN_IN_COOKIE)
    if not form_id or not csrf_ok(secret=_secret(request), sid="sign-in:" + form_id, given=given):
        raise Forbidden("The sign-in form has expired or did not come from this console; reload it and try again.")


# ---------------------------------------------------------------- checks (StaffCtx's dependencies call these)


async def signed_in(request: Request, session: AsyncSession) -> Staff:
    """The signed-in staff member, or ``SignInRequired``."""
    rt = runtime(request)
    secret = rt.settings.effective_secret_key()
    claims = unseal(request.cookies.get(SESSION_COOKIE), secret=secret, now=rt.clock.now())
    if claims is None or claims.sid in signed_out_sessions(request):
        raise SignInRequired()
    try:
        principal = await authenticate_staff_hash(session=session, token_hash=claims.token_hash,
                                                  admin_token=rt.settings.admin_token, now=rt.clock.now())
    except Unauthorized:
        raise SignInRequired() from None
    staff = Staff(principal=principal, sid=claims.sid, csrf=csrf_token(secret=secret, sid=claims.sid),
                  expires_at=claims.expires_at, token_hash=claims.token_hash)
    request.state.console_staff = staff  # error pages still show who is signed in
    return staff


async def check_form_csrf(request: Request, staff: Staff) -> None:
    """A form POST's CSRF token must match the session's (403 otherwise)."""
    form = await request.form()
    if not csrf_ok(secret=runtime(request).settings.effective_secret_key(), sid=staff.sid, given=form.get(CSRF_FIELD)):
        raise Forbidden("The form's security token is missing or wrong; reload the page and try again.")
