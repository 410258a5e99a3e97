"""JWT bearer tokens from an organisation's identity provider, verified offline.

Keys come from a JWKS file or a PEM public key; ``none`` and HMAC algorithms are never
accepted (a public key must not double as an HMAC secret). A token is checked in this
order, and any failure is :class:`~warden.errors.InvalidToken` (401), never a crash:

1. its size (at most ``MAX_TOKEN_BYTES`` of ASCII) before anything is decoded;
2. its signature, by a key of the issuer (the ``kid`` picks it from a JWKS);
3. issuer, audience (when configured), ``exp``, ``nbf`` and ``iat`` as NumericDates (JSON
   numbers, not strings), and a lifetime ``exp - iat`` of at most ``max_lifetime_seconds``
   (``iat`` is required, since a token without it has no known lifetime);
4. ``sub``: 1-255 visible ASCII characters, nothing shaped like an API key; the tenant
   claim: a tenant name (which must exist and be active); the scope claim: absent, a
   string of space-separated scopes, or a list of short strings. A principal has one scope:
   the first of ``admin``, ``approve``, ``train`` the token grants, else ``detect``. The
   principal's id is ``jwt:<sub>``, which is what separation of duties compares: the subject
   that requested an approval cannot decide it, whatever scope its next token carries.

Every claim is caller-chosen data: none is echoed in an error message, and a refused
token's subject reaches the audit trail only as :func:`subject_marker` makes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Final

import jwt
from jwt import PyJWKSet, PyJWS

from warden.errors import InvalidArgument, InvalidToken, TenantNotServed, Unauthenticated
from warden.tenancy.principal import Principal, Scope
from warden.tenancy.service import NAME_PATTERN, TenantService

JWT: Final = "jwt"
_REFUSED: Final = frozenset({"none", "HS256", "HS384", "HS512"})
MAX_TOKEN_BYTES: Final = 8192
"""The longest token decoded at all (a compact JWS is ASCII: characters are bytes)."""
SUBJECT_PATTERN: Final = re.compile(r"[!-~]{1,255}")
"""A subject: 1-255 visible ASCII characters (no space, no control or non-ASCII character)."""
KEY_SHAPED: Final = re.compile(r"wdn_[0-9a-f]{12}_")
"""The start of a Warden API key: a subject holding one is refused and never recorded."""
MAX_SCOPE_CHARS: Final = 1024
"""The longest scope claim written as one string of space-separated scopes."""
SCOPE_STRING: Final = re.compile(r"[ !-~]{0,1024}")
SCOPE_ITEM: Final = re.compile(r"[!-~]{1,128}")
"""One scope in a list: 1-128 visible ASCII characters."""
MAX_SCOPES: Final = 64
"""The most scopes a list may hold."""
_SCOPE_ORDER: Final = (Scope.ADMIN, Scope.APPROVE, Scope.TRAIN)
"""A token granting several scopes acts with the first of these it grants (else ``detect``): a principal has one."""
_DIGEST_CHARS: Final = 16
_REQUIRED: Final = ["exp", "iat", "iss", "sub"]
_NUMERIC_DATES: Final = ("exp", "iat", "nbf")
# Raised by decoding crafted input that PyJWT does not wrap: a kid naming a key of another type
# (TypeError), a payload that is not UTF-8 or not JSON (ValueError).
_DECODE_ERRORS: Final = (jwt.PyJWTError, TypeError, ValueError, RecursionError)
"""What decoding a hostile token raises: a signed payload nested thousands deep is a RecursionError."""


def looks_like_jwt(credential: str) -> bool:
    """A compact JWS: three base64url segments, the first a JSON header (``eyJ``)."""
    return credential.startswith("eyJ") and credential.count(".") == 2


def well_formed_subject(subject: object) -> bool:
    """Whether ``sub`` may name a principal: 1-255 visible ASCII characters, nothing shaped like an API key."""
    if not isinstance(subject, str):
        return False
    return SUBJECT_PATTERN.fullmatch(subject) is not None and KEY_SHAPED.search(subject) is None


def subject_marker(subject: object) -> str:
    """What an audit record may keep of a verified token's ``sub``, bounded whatever the claim holds.

    A well-formed subject is kept as the principal's key id (``jwt:<sub>``); any other string as
    ``jwt-sha256:`` and 16 hex digits of its digest (a long or key-shaped subject is never kept
    verbatim); any other JSON value as ``jwt-invalid:`` and its type.
    """
    if isinstance(subject, str):
        if well_formed_subject(subject):
            return f"{JWT}:{subject}"
        digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{JWT}-sha256:{digest[:_DIGEST_CHARS]}"
    return f"{JWT}-invalid:{'missing' if subject is None else type(subject).__name__}"


class JwtVerifier:
    """Verifies tokens of one issuer and maps them to principals of existing tenants."""

    def __init__(
        self,
        tenants: TenantService,
        *,
        issuer: str,
        audience: str | None,
        keys: dict[str | None, Any],
        algorithms: list[str],
        max_lifetime_seconds: int,
        tenant_claim: str = "tenant",
        scope_claim: str = "scope",
    ) -> None:
        refused = sorted(set(algorithms) & _REFUSED)
        if refused or not algorithms:
            raise InvalidArgument(f"JWT algorithms {refused or algorithms} are not allowed; use asymmetric ones")
        if max_lifetime_seconds < 1:
            raise InvalidArgument(f"the JWT maximum lifetime must be at least 1 second, not {max_lifetime_seconds}")
        self._tenants = tenants
        self._issuer = issuer
        self._audience = audience
        self._keys = keys
        self._algorithms = algorithms
        self._max_lifetime = max_lifetime_seconds
        self._tenant_claim = tenant_claim
        self._scope_claim = scope_claim
        self._jws = PyJWS()

    @classmethod
    def from_files(
        cls,
        tenants: TenantService,
        *,
        issuer: str,
        audience: str | None,
        jwks_file: Path | None,
        public_key_file: Path | None,
        algorithms: list[str],
        max_lifetime_seconds: int,
        tenant_claim: str,
        scope_claim: str,
    ) -> JwtVerifier:
        """Load the issuer's keys from a JWKS file (by ``kid``) or one PEM public key."""
        if (jwks_file is None) == (public_key_file is None):
            raise InvalidArgument("JWT needs exactly one of WARDEN_JWT_JWKS_FILE and WARDEN_JWT_PUBLIC_KEY_FILE")
        keys: dict[str | None, Any] = {}
        try:
            if jwks_file is not None:
                for key in PyJWKSet.from_dict(json.loads(jwks_file.read_text())).keys:
                    keys[key.key_id] = key.key
            elif public_key_file is not None:
                keys[None] = public_key_file.read_text()
        except (OSError, ValueError, TypeError, AttributeError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
            raise InvalidArgument(f"cannot load the JWT keys: {exc}") from None
        if jwks_file is not None and any(isinstance(key, bytes | bytearray) for key in keys.values()):
            raise InvalidArgument("the JWKS holds a symmetric (oct) key; only public keys are accepted")
        return cls(
            tenants,
            issuer=issuer,
            audience=audience,
            keys=keys,
            algorithms=algorithms,
            max_lifetime_seconds=max_lifetime_seconds,
            tenant_claim=tenant_claim,
            scope_claim=scope_claim,
        )

    def authenticate(self, token: str) -> Principal:
        """Verify ``token`` and return its principal; ``InvalidToken`` (or ``Forbidden``: a suspended tenant)."""
        claims = self._verified_claims(token)
        subject = subject_marker(claims.get("sub"))
        try:
            self._check_claims(token, claims)
            tenant = self._tenant(claims)
            scope = self._scope(claims)
            if not well_formed_subject(claims["sub"]):
                raise InvalidToken("the token's subject must be 1-255 visible ASCII characters, not a key")
            try:
                return self._tenants.principal_for(tenant, subject, scope, JWT)
            except Unauthenticated as exc:  # no such tenant
                raise InvalidToken(exc.message) from None
        except InvalidToken as exc:
            raise InvalidToken(exc.message, subject) from None

    def _verified_claims(self, token: str) -> dict[str, Any]:
        """The token's claims once its signature verifies; nothing of an unverified token is trusted."""
        if len(token) > MAX_TOKEN_BYTES or not token.isascii():
            raise InvalidToken(f"invalid token: longer than {MAX_TOKEN_BYTES} bytes or not ASCII")
        try:
            kid = self._jws.get_unverified_header(token).get("kid")
            key = self._keys.get(kid, self._keys.get(None))
            if key is None:
                raise InvalidToken("the token's signing key is unknown")
            payload = self._jws.decode(token, key=key, algorithms=self._algorithms)
            claims = json.loads(payload)
        except _DECODE_ERRORS as exc:
            raise InvalidToken(f"invalid token: {_reason(exc)}") from None
        if not isinstance(claims, dict):
            raise InvalidToken("invalid token: its payload is not a JSON object")
        return claims

    def _check_claims(self, token: str, claims: dict[str, Any]) -> None:
        """Issuer, audience, expiry, not-before, issued-at and lifetime of a token whose signature verified."""
        for name in _NUMERIC_DATES:
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InvalidToken(f"invalid token: '{name}' must be a number of seconds")
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidToken(f"invalid token: '{name}' must be finite")
        try:
            # The signature of this very string verified above: this pass checks claims only.
            jwt.decode(
                token,
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "verify_signature": False,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_iss": True,
                    "verify_aud": self._audience is not None,
                    "verify_sub": True,
                    "verify_jti": True,
                    "require": _REQUIRED,
                },
            )
        except _DECODE_ERRORS as exc:
            raise InvalidToken(f"invalid token: {_reason(exc)}") from None
        if int(claims["exp"]) - int(claims["iat"]) > self._max_lifetime:  # ints: 10**400 - 1.5 overflows a float
            raise InvalidToken(
                f"invalid token: it lives longer than {self._max_lifetime} seconds (WARDEN_JWT_MAX_LIFETIME_SECONDS)"
            )

    def _tenant(self, claims: dict[str, Any]) -> str:
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not NAME_PATTERN.fullmatch(tenant):
            raise InvalidToken(f"the token's '{self._tenant_claim}' claim must be a tenant name")
        return tenant

    def _scope(self, claims: dict[str, Any]) -> Scope:
        if self._scope_claim not in claims:
            return Scope.DETECT
        scopes = claims[self._scope_claim]
        if isinstance(scopes, str) and SCOPE_STRING.fullmatch(scopes):
            granted = scopes.split(" ")
        elif (
            isinstance(scopes, list)
            and len(scopes) <= MAX_SCOPES
            and all(isinstance(s, str) and SCOPE_ITEM.fullmatch(s) for s in scopes)
        ):
            granted = scopes
        else:
            raise InvalidToken(
                f"the token's '{self._scope_claim}' claim must be a string of space-separated scopes "
                f"(at most {MAX_SCOPE_CHARS} characters) or a list of at most {MAX_SCOPES} short strings"
            )
        for scope in _SCOPE_ORDER:
            if scope.value in granted:
                return scope
        return Scope.DETECT


def _reason(error: Exception) -> str:
    """Why decoding failed, without any of the token's content (PyJWT's messages hold none)."""
    return str(error) if isinstance(error, jwt.PyJWTError) else "malformed"


class Authenticator:
    """Every way to authenticate: API keys always, JWT bearer tokens when an issuer is configured.

    ``served`` limits the tenants this replica serves (``WARDEN_SERVE_TENANTS``): another
    tenant's valid credential is refused with ``TenantNotServed``; operator keys always pass.
    """

    def __init__(
        self,
        tenants: TenantService,
        jwt_verifier: JwtVerifier | None = None,
        served: frozenset[str] | None = None,
    ) -> None:
        self._tenants = tenants
        self._jwt = jwt_verifier
        self._served = served

    def cached(self, credential: str) -> Principal | None:
        """The principal of an API key authenticated moments ago (no database work), else ``None``."""
        if self._jwt is not None and looks_like_jwt(credential):
            return None
        caller = self._tenants.cached_principal(credential)
        return None if caller is None else self.served_here(caller)

    def authenticate(self, credential: str) -> Principal:
        """The principal of a presented credential."""
        if self._jwt is not None and looks_like_jwt(credential):
            return self.served_here(self._jwt.authenticate(credential))
        return self.served_here(self._tenants.authenticate(credential))

    def served_here(self, caller: Principal) -> Principal:
        """``caller`` unchanged, or ``TenantNotServed`` when this replica serves other tenants."""
        if self._served is not None and caller.tenant_name is not None and caller.tenant_name not in self._served:
            raise TenantNotServed("this replica serves other tenants; send the request to your tenant's endpoint")
        return caller
