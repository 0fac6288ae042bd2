"""Staff sign-in through the organization's OpenID Connect provider: Authorization Code with PKCE.

The console (``tracker.web.console.oidc``) drives it in two requests:

1. ``IdentityProvider.begin``: a fresh ``state`` (ties the provider's answer to this browser),
   ``nonce`` (ties the ID token to this attempt) and PKCE ``code_verifier``; the provider's
   authorization URL, built by Authlib's client, carries the state, the nonce and the verifier's
   S256 challenge. The console keeps the attempt in a short-lived signed cookie.
2. ``IdentityProvider.finish``: the code is exchanged at the token endpoint by Authlib's client
   (client id and secret, the redirect URI, the verifier); the ID token's signature is checked
   against the provider's JWKS, then Authlib's ``CodeIDToken`` checks iss, aud, exp and iat (on
   Baton's clock, not the machine's), nonce, azp and at_hash. The staff role comes from the
   configured claim (``staff_role``); an account without one is refused.

The discovery document and the JWKS are fetched when first needed and kept on this object, which
the app's runtime holds (one per process, nothing module-global). An ID token signed with a key
id the set lacks fetches the set once more: the provider has rotated its keys. A failed fetch is
not kept, so the next sign-in tries again.

Refusals (``kernel.errors``), each shown to the browser as a page:
    BadRequest      400  the answer carries no code, or the attempt is not this browser's
    Unauthorized    401  the provider refused the sign-in, or its ID token did not verify
    Forbidden       403  the account has no Baton role
    BadGateway      502  the provider cannot be reached, or answers what the protocol does not allow
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning  # first: importing it turns its warnings on, always
from authlib.integrations.base_client import OAuthError
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata, get_well_known_url
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from kernel.config import Settings
from kernel.errors import BadGateway, BadRequest, Forbidden, Unauthorized
from tracker.models import Event
from tracker.principals import ROLES

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 fork and warns when it falls back to httpx, which Baton uses
    # throughout (pinned in requirements.lock); the client works the same on either.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

# Asymmetric algorithms only: "none" and the HMAC family (keyed with the client secret) are never
# accepted, whatever the discovery document offers.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 60  # clock skew allowed between Baton and the provider on exp and iat
TIMEOUT_SECONDS = 10.0
# Token endpoint errors that mean Baton's own registration is wrong, not the person's sign-in.
_CLIENT_ERRORS = {"invalid_client", "unauthorized_client", "unsupported_grant_type"}
# "staff:" + the name must fit an event's actor column, or no write of the person's would store.
NAME_MAX = Event.__table__.c.actor.type.length - len("staff:")


@dataclass(frozen=True, slots=True)
class SignInAttempt:
    """One sign-in on its way through the provider, as the console's attempt cookie keeps it."""

    state: str
    nonce: str
    code_verifier: str
    next: str  # the console page to land on afterwards
    expires_at: int  # Unix seconds


@dataclass(frozen=True, slots=True)
class Identity:
    """The person the provider vouched for, with the Baton role their claims map to."""

    name: str  # the actor's name: staff:<name>; the email when the provider gives one, else the subject
    display_name: str
    subject: str
    role: str


def staff_role(*, claims: Mapping[str, Any], claim: str, role_map: Mapping[str, str]) -> str | None:
    """The highest staff role the claim's values map to (with no map, the values that are role names)."""
    values = claim_value(claims, claim)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return None
    # Without a map only the role names themselves count: with one, an unrelated group that happens
    # to be called "admin" at the provider must not make anyone a Baton admin.
    granted = {role_map.get(value) if role_map else value for value in values if isinstance(value, str)}
    ranked = [role for role in ROLES if role in granted]
    return ranked[-1] if ranked else None


def claim_value(claims: Mapping[str, Any], claim: str) -> Any:
    """A claim by name, or by a dotted path into objects (``realm_access.roles``) when no claim has the name."""
    if claim in claims:  # names may contain dots themselves (https://baton.example/roles)
        return claims[claim]
    value: Any = claims
    for part in claim.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def identity_of(*, claims: Mapping[str, Any], role: str) -> Identity:
    """Who signed in: the email names the actor unless the provider says it is unverified; else the subject."""
    subject = str(claims["sub"])
    email = claims.get("email")
    email = email.strip() if isinstance(email, str) and claims.get("email_verified") is not False else ""
    name = next((n for n in (email, subject) if n and len(n) <= NAME_MAX), "")
    if not name:  # both too long for the timeline: a stable digest of the subject, never a truncated (shared) prefix
        name = "sub-sha256:" + hashlib.sha256(subject.encode()).hexdigest()[:40]
    shown = claims.get("name") or claims.get("preferred_username") or name
    return Identity(name=name, display_name=str(shown).strip()[:200] or name, subject=subject[:255], role=role)


class IdentityProvider:
    """The organization's OpenID Connect provider, as Baton's console uses it (one per app, on the runtime)."""

    def __init__(self, *, settings: Settings) -> None:
        if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
            raise ValueError("single sign-on is not configured (BATON_OIDC_ISSUER and its client)")
        self.issuer = settings.oidc_issuer
        self.client_id = settings.oidc_client_id
        self._client_secret = settings.oidc_client_secret
        self.scopes = settings.oidc_scopes
        self.role_claim = settings.oidc_role_claim
        self.role_map = dict(settings.oidc_role_map)
        self.session_length = dt.timedelta(hours=settings.oidc_session_hours)
        self._metadata: OpenIDProviderMetadata | None = None
        self._keys: KeySet | None = None

    # ------------------------------------------------------------ the two steps

    async def begin(
        self, *, redirect_uri: str, next: str, now: dt.datetime, lasts: dt.timedelta
    ) -> tuple[str, SignInAttempt]:
        """The provider's authorization URL for a new attempt, and the attempt to keep until the provider answers."""
        metadata = await self.metadata()
        attempt = SignInAttempt(state=generate_token(32), nonce=generate_token(32), code_verifier=generate_token(64),
                                next=next, expires_at=int((now + lasts).timestamp()))
        async with self._client(redirect_uri=redirect_uri) as client:
            url, _ = client.create_authorization_url(metadata["authorization_endpoint"], state=attempt.state,
                                                     nonce=attempt.nonce, code_verifier=attempt.code_verifier)
        return url, attempt

    async def finish(self, *, code: str, attempt: SignInAttempt, redirect_uri: str, now: dt.datetime) -> Identity:
        """Exchange the code, verify the ID token, and map its claims to a Baton role (``Forbidden`` without one)."""
        token = await self._exchange(code=code, attempt=attempt, redirect_uri=redirect_uri)
        claims = await self.verify_id_token(token.get("id_token"), nonce=attempt.nonce,
                                            access_token=token.get("access_token"), now=now)
        role = staff_role(claims=claims, claim=self.role_claim, role_map=self.role_map)
        if role is None:
            raise Forbidden("Your account has no Baton role; ask your administrator to give you one.")
        return identity_of(claims=claims, role=role)

    # ------------------------------------------------------------ the provider's documents

    async def metadata(self) -> OpenIDProviderMetadata:
        """The provider's discovery document, fetched once and checked (issuer, endpoints, https)."""
        if self._metadata is None:
            document = await self._get_json(get_well_known_url(self.issuer, external=True), what="discovery document")
            metadata = OpenIDProviderMetadata(document)
            try:
                metadata.validate()
            except (ValueError, TypeError) as error:
                raise BadGateway(f"The identity provider's discovery document is not valid: {error}") from None
            # OpenID Connect Discovery 1.0, 4.3: the issuer must be exactly the one configured.
            if metadata.get("issuer") != self.issuer:
                raise BadGateway(f"The identity provider's discovery document names issuer {metadata.get('issuer')!r}, "
                                 f"not {self.issuer!r} (BATON_OIDC_ISSUER).")
            if not metadata.get("authorization_endpoint") or not metadata.get("jwks_uri"):
                raise BadGateway("The identity provider's discovery document has no authorization_endpoint or jwks_uri.")
            self._metadata = metadata
        return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (its JWKS), fetched once and again when ``refresh``."""
        if self._keys is None or refresh:
            metadata = await self.metadata()
            document = await self._get_json(metadata["jwks_uri"], what="key set")
            try:
                self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as error:
                raise BadGateway(f"The identity provider's key set cannot be read: {error}") from None
        return self._keys

    # ------------------------------------------------------------ the ID token

    async def verify_id_token(
        self, id_token: object, *, nonce: str, access_token: object, now: dt.datetime
    ) -> CodeIDToken:
        """The ID token's claims once its signature, iss, aud, exp, iat and nonce have been checked (``Unauthorized``)."""
        if not isinstance(id_token, str) or not id_token:
            raise BadGateway("The identity provider answered without an ID token (is the openid scope granted?).")
        registry = JWSRegistry(algorithms=list(await self._algorithms()), strict_check_header=False)
        try:
            try:
                decoded = jwt.decode(id_token, await self.keys(), registry=registry)
            except InvalidKeyIdError:
                decoded = jwt.decode(id_token, await self.keys(refresh=True), registry=registry)
            claims = CodeIDToken(
                decoded.claims, decoded.header,
                {"iss": {"essential": True, "value": self.issuer}, "aud": {"essential": True, "value": self.client_id},
                 "nonce": {"essential": True, "value": nonce}},
                {"nonce": nonce, "client_id": self.client_id,
                 **({"access_token": access_token} if isinstance(access_token, str) else {})},
            )
            claims.validate(now=int(now.timestamp()), leeway=LEEWAY_SECONDS)
        except ExpiredTokenError:
            raise Unauthorized("The sign-in took too long: the identity provider's ID token has expired. "
                               "Start again.") from None
        except (JoseError, ValueError, TypeError) as error:
            raise Unauthorized(f"The identity provider's ID token did not verify ({_reason(error)}); "
                               "the sign-in was refused.") from None
        return claims

    async def _algorithms(self) -> tuple[str, ...]:
        offered = (await self.metadata()).get("id_token_signing_alg_values_supported") or ["RS256"]
        allowed = tuple(alg for alg in offered if alg in SIGNING_ALGORITHMS)
        if not allowed:
            raise BadGateway(f"The identity provider signs ID tokens only with {', '.join(map(str, offered))}; "
                             f"Baton accepts {', '.join(SIGNING_ALGORITHMS)}.")
        return allowed

    # ------------------------------------------------------------ HTTP

    def _client(self, *, redirect_uri: str) -> AsyncOAuth2Client:
        supported = (self._metadata or {}).get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = "client_secret_basic" if "client_secret_basic" in supported else "client_secret_post"
        return AsyncOAuth2Client(
            client_id=self.client_id, client_secret=self._client_secret, scope=self.scopes, redirect_uri=redirect_uri,
            code_challenge_method="S256", token_endpoint_auth_method=method, timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )

    async def _exchange(self, *, code: str, attempt: SignInAttempt, redirect_uri: str) -> dict[str, Any]:
        metadata = await self.metadata()
        try:
            async with self._client(redirect_uri=redirect_uri) as client:
                token = await client.fetch_token(metadata["token_endpoint"], grant_type="authorization_code", code=code,
                                                 code_verifier=attempt.code_verifier)
        except OAuthError as error:
            if error.error in _CLIENT_ERRORS:
                raise BadGateway(f"The identity provider refused Baton's client ({error.error}): check "
                                 "BATON_OIDC_CLIENT_ID and BATON_OIDC_CLIENT_SECRET.") from None
            raise Unauthorized(f"The identity provider did not accept this sign-in ({_code(error.error)}); "
                               "start again.") from None
        except httpx.HTTPError as error:
            raise BadGateway(f"The identity provider's token endpoint failed ({type(error).__name__}).") from None
        except ValueError:
            raise BadGateway("The identity provider's token endpoint answered something that is not JSON.") from None
        return dict(token)

    async def _get_json(self, url: str, *, what: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
                response = await http.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                document = response.json()
        except httpx.HTTPError as error:
            raise BadGateway(f"The identity provider's {what} could not be fetched ({type(error).__name__}).") from None
        except ValueError:
            raise BadGateway(f"The identity provider's {what} is not JSON.") from None
        if not isinstance(document, dict):
            raise BadGateway(f"The identity provider's {what} is not a JSON object.")
        return document


def provider_answer(*, code: str | None, error: str | None) -> str:
    """The authorization code of the provider's answer, or why there is none (the person declined, ...)."""
    if error:
        raise Unauthorized(f"Your organization's sign-in did not complete ({_code(error)}).")
    if not code:
        raise BadRequest("The identity provider's answer carries no authorization code; start again.")
    return code


def _code(value: object) -> str:
    # Only an RFC 6749 error code is repeated on the page, never free text from the query string.
    return value if isinstance(value, str) and re.fullmatch(r"[a-z_]{1,64}", value) else "error"


def _reason(error: Exception) -> str:
    """A short reason for the page, from a fixed vocabulary (never the token's content)."""
    if isinstance(error, MissingClaimError):
        return f"no {error.claim} claim"
    if isinstance(error, ClaimError):
        return f"wrong {error.claim}"
    if isinstance(error, BadSignatureError):
        return "bad signature"
    if isinstance(error, InvalidKeyIdError):
        return "signed with a key the provider does not publish"
    return "malformed token"
