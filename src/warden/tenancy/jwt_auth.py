"""JWT bearer tokens from an organisation's identity provider, verified offline.

Keys come from a JWKS file or a PEM public key. Issuer, audience, expiry and
signature are checked by PyJWT; ``none`` and HMAC algorithms are never accepted
(a public key must not double as an HMAC secret). A configured claim names the
tenant; the tenant must exist and be active.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import jwt
from jwt import PyJWKSet

from warden.errors import InvalidArgument, TenantNotServed, Unauthenticated
from warden.tenancy.principal import Principal, Scope
from warden.tenancy.service import TenantService

JWT: Final = "jwt"
_REFUSED: Final = frozenset({"none", "HS256", "HS384", "HS512"})


def looks_like_jwt(credential: str) -> bool:
    """A compact JWS: three base64url segments, the first a JSON header (``eyJ``)."""
    return credential.startswith("eyJ") and credential.count(".") == 2


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
        tenant_claim: str = "tenant",
        scope_claim: str = "scope",
    ) -> None:
        refused = sorted(set(algorithms) & _REFUSED)
        if refused or not algorithms:
            raise InvalidArgument(f"JWT algorithms {refused or algorithms} are not allowed; use asymmetric ones")
        self._tenants = tenants
        self._issuer = issuer
        self._audience = audience
        self._keys = keys
        self._algorithms = algorithms
        self._tenant_claim = tenant_claim
        self._scope_claim = scope_claim

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
            tenant_claim=tenant_claim,
            scope_claim=scope_claim,
        )

    def authenticate(self, token: str) -> Principal:
        """Verify ``token`` and return its principal, or raise ``Unauthenticated`` / ``Forbidden``."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid, self._keys.get(None))
            if key is None:
                raise Unauthenticated("the token's signing key is unknown")
            claims = jwt.decode(
                token,
                key=key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "iss", "sub"], "verify_aud": self._audience is not None},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as exc:  # a kid naming a key of another type: TypeError
            raise Unauthenticated(f"invalid token: {exc}") from None
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(f"the token has no '{self._tenant_claim}' claim")
        scopes = claims.get(self._scope_claim, "")
        listed = scopes.split() if isinstance(scopes, str) else scopes if isinstance(scopes, list) else []
        granted = {s for s in listed if isinstance(s, str)}
        scope = Scope.ADMIN if Scope.ADMIN.value in granted else Scope.DETECT
        return self._tenants.principal_for(tenant, f"jwt:{claims['sub']}", scope, JWT)


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
