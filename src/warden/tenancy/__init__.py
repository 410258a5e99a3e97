"""Tenancy: tenants, API keys (shown once, stored as keyed hashes), scopes and principals."""

from warden.tenancy.jwt_auth import Authenticator, JwtVerifier
from warden.tenancy.keys import IssuedKey, load_server_secret
from warden.tenancy.principal import Principal, Scope
from warden.tenancy.quota import DEDICATED, SHARED, Quota
from warden.tenancy.service import KeyView, TenantService, TenantView, check_name

__all__ = [
    "DEDICATED",
    "SHARED",
    "Authenticator",
    "IssuedKey",
    "JwtVerifier",
    "KeyView",
    "Principal",
    "Quota",
    "Scope",
    "TenantService",
    "TenantView",
    "check_name",
    "load_server_secret",
]
