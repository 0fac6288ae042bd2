"""A local OpenID Connect provider for tests: the app's real Authlib client signs staff in through it over HTTP.

    with OidcProvider() as idp:
        idp.add_user("sam", "sam-password", name="Sam Supervisor", email="sam@example.com",
                     groups=["staff", "baton-supervisors"])
        idp.allow_redirect("http://baton.test/console/oidc/callback")
        settings = Settings(..., **idp.settings())   # BATON_OIDC_ISSUER, _CLIENT_ID, _CLIENT_SECRET
        # A browser (or a test following redirects by hand) goes to the authorization URL the app
        # redirected it to, posts the login form, and is sent back with ?code=...&state=...

A real server on 127.0.0.1 (``tests.support._http``) that speaks the protocol as a provider does:

    GET  /.well-known/openid-configuration  OpenID Connect Discovery 1.0
    GET  /jwks                              the public half of an RSA key generated at start (RFC 7517)
    GET  /authorize                         client_id and redirect_uri must be registered (else a 400 page,
                                            never a redirect); response_type=code, scope with openid and an
                                            S256 code_challenge are required (else error=invalid_request back
                                            at the redirect URI); answers with a login form
    POST /authorize                         username and password: 302 to redirect_uri?code=...&state=...;
                                            a wrong password gets the form again (401)
    POST /token                             client_secret_basic or client_secret_post; the code is single-use,
                                            lives 60 s, and is bound to the client, the redirect URI and the
                                            PKCE challenge (RFC 7636); errors as RFC 6749 5.2 JSON

The ID token is RS256, signed here with ``cryptography`` rather than with the JOSE library under test:
iss, aud, sub, email, email_verified, name, nonce, iat, exp (5 minutes), auth_time, at_hash, and the
user's own claims (a role claim, groups). Tokens are issued at ``clock()`` (the app's clock in tests).

Trouble on demand: ``tamper_next(claims={...}, key="rogue" | "unknown")`` changes the next ID token
(a claim set to None is left out; ``rogue`` signs with another key under the published key id,
``unknown`` with another key under a key id the JWKS does not list); ``rotate_key()`` replaces the
signing key; ``token_requests`` keeps what the token endpoint was sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support._http import Reply, Server

CODE_LIFETIME = dt.timedelta(seconds=60)
ID_TOKEN_LIFETIME = dt.timedelta(minutes=5)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or secrets.token_hex(8), rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": _uint(numbers.n), "e": _uint(numbers.e)}

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS (RFC 7515), RS256: RSASSA-PKCS1-v1_5 with SHA-256."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"


@dataclass
class User:
    password: str
    claims: dict[str, Any]


@dataclass
class Grant:
    """An authorization code, and what it was issued for."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    username: str
    issued_at: dt.datetime


class OidcProvider:
    """An OpenID Connect provider on a loopback port (see the module docstring)."""

    def __init__(self, *, client_id: str = "baton-console", client_secret: str | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.clock: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.key = SigningKey.generate()
        self.redirect_uris: set[str] = set()
        self.users: dict[str, User] = {}
        self.token_requests: list[dict[str, str]] = []
        self._grants: dict[str, Grant] = {}
        self._tamper: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._server: Server | None = None
        self.issuer = ""

    # ------------------------------------------------------------ lifecycle and configuration

    def __enter__(self) -> Self:
        self._server = Server(("127.0.0.1", 0), self._respond, name="oidc-provider")
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()

    def settings(self) -> dict[str, str]:
        """The app's BATON_OIDC_ISSUER, _CLIENT_ID and _CLIENT_SECRET, as Settings keyword arguments."""
        return {"oidc_issuer": self.issuer, "oidc_client_id": self.client_id, "oidc_client_secret": self.client_secret}

    def allow_redirect(self, uri: str) -> None:
        """Register one of the client's redirect URIs (a real provider compares them exactly)."""
        self.redirect_uris.add(uri)

    def add_user(self, username: str, password: str, *, sub: str | None = None, **claims: Any) -> None:
        """A person who can sign in here, with the claims their ID tokens carry (name, email, groups, ...)."""
        with self._lock:
            self.users[username] = User(password, {"sub": sub or f"sub-{username}", **claims})

    def tamper_next(self, *, claims: dict[str, Any] | None = None, key: str | None = None) -> None:
        """Change the next ID token: its claims (None leaves one out), or sign it with a ``rogue``/``unknown`` key."""
        self._tamper = {"claims": claims or {}, "key": key}

    def rotate_key(self) -> None:
        """Sign with a new key from now on; the JWKS lists only the new one."""
        self.key = SigningKey.generate()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.jwk()]}

    # ------------------------------------------------------------ the protocol

    def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        match (method, parts.path):
            case ("GET", "/.well-known/openid-configuration"):
                return Reply.json(200, self._discovery())
            case ("GET", "/jwks"):
                return Reply.json(200, self.jwks())
            case ("GET", "/authorize"):
                return self._authorize(query, login=None)
            case ("POST", "/authorize"):
                return self._authorize(dict(parse_qsl(body.decode())), login=dict(parse_qsl(body.decode())))
            case ("POST", "/token"):
                return self._token(headers, dict(parse_qsl(body.decode())))
        return Reply.json(404, {"error": "not_found"})

    def _discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "name", "groups"],
        }

    def _authorize(self, params: dict[str, str], *, login: dict[str, str] | None) -> Reply:
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        if client_id != self.client_id or redirect_uri not in self.redirect_uris:
            # Never redirect to a URI nobody registered (RFC 6749 4.1.2.1): the person sees an error.
            return _page(400, "Unknown client or redirect URI.")
        state = params.get("state")
        if (params.get("response_type") != "code" or "openid" not in params.get("scope", "").split()
                or params.get("code_challenge_method") != "S256" or not params.get("code_challenge")):
            return _redirect(redirect_uri, error="invalid_request", state=state)
        if login is None:
            return _page(200, _login_form(params))
        with self._lock:
            user = self.users.get(login.get("username", ""))
        if user is None or not secrets.compare_digest(user.password.encode(), login.get("password", "").encode()):
            return _page(401, _login_form(params, error="Wrong username or password."))
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = Grant(client_id, redirect_uri, params["code_challenge"], params.get("nonce"),
                                       login["username"], self.clock())
        return _redirect(redirect_uri, code=code, state=state)

    def _token(self, headers: dict[str, str], form: dict[str, str]) -> Reply:
        self.token_requests.append({**form, "authorization": headers.get("authorization", "")})
        client_id, client_secret = _client_credentials(headers, form)
        if client_id != self.client_id or not secrets.compare_digest(client_secret.encode(),
                                                                     self.client_secret.encode()):
            return Reply.json(401, {"error": "invalid_client"}, (("WWW-Authenticate", 'Basic realm="oidc"'),))
        if form.get("grant_type") != "authorization_code":
            return Reply.json(400, {"error": "unsupported_grant_type"})
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # single use, whatever happens next
        if grant is None or self.clock() - grant.issued_at > CODE_LIFETIME:
            return _token_error("the code is unknown, used or expired")
        if grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
            return _token_error("the code was issued to another client or redirect URI")
        verifier = form.get("code_verifier", "")
        if not verifier or b64url(hashlib.sha256(verifier.encode()).digest()) != grant.code_challenge:
            return _token_error("PKCE verification failed")
        access_token = secrets.token_urlsafe(24)
        return Reply.json(200, {"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
                                "scope": "openid email profile", "id_token": self._id_token(grant, access_token)},
                          (("Cache-Control", "no-store"),))

    def _id_token(self, grant: Grant, access_token: str) -> str:
        now = self.clock()
        with self._lock:
            user = self.users[grant.username]
        digest = hashlib.sha256(access_token.encode()).digest()
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": grant.client_id, "iat": int(now.timestamp()), "auth_time": int(now.timestamp()),
            "exp": int((now + ID_TOKEN_LIFETIME).timestamp()), "email_verified": True, "at_hash": b64url(digest[:16]),
            **({"nonce": grant.nonce} if grant.nonce else {}), **user.claims,
        }
        key = self.key
        tamper, self._tamper = self._tamper, None
        if tamper is not None:
            for name, value in tamper["claims"].items():
                if value is None:
                    claims.pop(name, None)
                else:
                    claims[name] = value
            if tamper["key"] == "rogue":
                key = SigningKey.generate(kid=self.key.kid)
            elif tamper["key"] == "unknown":
                key = SigningKey.generate()
        return key.sign(claims)


def _client_credentials(headers: dict[str, str], form: dict[str, str]) -> tuple[str, str]:
    """client_secret_basic (RFC 6749 2.3.1: each part form-urlencoded) or client_secret_post."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return "", ""
        return unquote_plus(client_id), unquote_plus(secret)
    return form.get("client_id", ""), form.get("client_secret", "")


def _token_error(description: str) -> Reply:
    return Reply.json(400, {"error": "invalid_grant", "error_description": description})


def _redirect(uri: str, **params: str | None) -> Reply:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return Reply(302, b"", (("Location", f"{uri}{'&' if '?' in uri else '?'}{query}"),))


def _page(status: int, content: str) -> Reply:
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Example organization sign-in</title>'
            f"</head><body><main>{content}</main></body></html>")
    return Reply(status, body.encode(), (("Content-Type", "text/html; charset=utf-8"),))


def _login_form(params: dict[str, str], *, error: str | None = None) -> str:
    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in params.items() if k not in ("username", "password"))
    problem = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return (f"<h1>Example organization</h1>{problem}"
            f'<form method="post" action="/authorize">{hidden}'
            '<label for="username">Username</label> <input id="username" name="username" autocomplete="username">'
            '<label for="password">Password</label> <input id="password" name="password" type="password">'
            '<button type="submit">Sign in</button></form>')
