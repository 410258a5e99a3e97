"""JWT claims of any JSON type or size, signed by the issuer: a principal or ``InvalidToken``, never a crash.

A case table covers each claim (``sub``, the tenant, the scope, ``iss``, ``aud``, ``exp``,
``iat``, ``nbf``, ``jti``) with values of the wrong type, size or shape, and a Hypothesis
property puts any JSON value in each. Then the audience and lifetime settings, and the
same tokens through the in-process app: a refusal is a JSON 401 ``invalid_token`` with its
audit record, whose subject is bounded and never a key or a 2,000-character string.
"""

# ruff: noqa: F811 - the fixtures imported from test_jwt are the test functions' arguments

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import tiny_graph
from tests.backends import database_url
from tests.tenancy.test_jwt import (  # noqa: F401 - fixtures among them, found by pytest under these names
    ALGORITHMS,
    AUDIENCE,
    ISSUER,
    MAX_LIFETIME,
    RSA_KID,
    b64json,
    ec_key,
    rsa_key,
    tenants,
    verifier,
    write_jwks,
)
from warden.api import create_app
from warden.audit import AuditFilter
from warden.errors import InvalidArgument, InvalidToken, Unauthenticated
from warden.samples import SAMPLE_IMAGE
from warden.services import Services, open_services
from warden.settings import Settings, load_settings
from warden.tenancy import JwtVerifier, Scope
from warden.tenancy.jwt_auth import MAX_TOKEN_BYTES, subject_marker

DROP = object()
"""A claim value meaning: leave the claim out."""
KEY = "wdn_0123456789ab_" + "S" * 43
"""Shaped like a Warden API key (a subject must never carry one into the audit trail)."""
LONG = "u" * 2000


@dataclass(frozen=True)
class At:
    """A NumericDate ``offset`` seconds from the moment the claims are made (tables outlive a minute)."""

    offset: float


def payload(**changes: object) -> dict[str, Any]:
    """Valid claims for tenant ``acme`` with ``changes`` applied (``DROP`` removes a claim, ``None`` is JSON null)."""
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "tenant": "acme", "iat": now}
    base["exp"] = now + 300
    base.update(changes)
    return {name: now + v.offset if isinstance(v, At) else v for name, v in base.items() if v is not DROP}


@pytest.fixture(scope="module")
def signed(rsa_key: rsa.RSAPrivateKey) -> Callable[[dict[str, Any]], str]:
    """Sign any JSON object as claims (PyJWT's encoder refuses some, such as a non-string ``iss``)."""

    def signer(claims: dict[str, Any]) -> str:
        return jwt.api_jws.encode(json.dumps(claims).encode(), rsa_key, algorithm="RS256", headers={"kid": RSA_KID})

    return signer


Sign = Callable[[dict[str, Any]], str]
NOW = int(time.time())
REFUSED: list[Any] = [
    # sub: 1-255 visible ASCII characters, never an API key.
    pytest.param({"sub": LONG}, id="sub of 2000 characters"),
    pytest.param({"sub": "u" * 256}, id="sub of 256 characters"),
    pytest.param({"sub": "u" * 1025}, id="sub past the audit field limit"),
    pytest.param({"sub": KEY}, id="sub is an API key"),
    pytest.param({"sub": f"user:{KEY}"}, id="sub holds an API key"),
    pytest.param({"sub": ""}, id="empty sub"),
    pytest.param({"sub": "two words"}, id="sub with a space"),
    pytest.param({"sub": "tab\there"}, id="sub with a control character"),
    pytest.param({"sub": "nul\x00"}, id="sub with a NUL"),
    pytest.param({"sub": "josé"}, id="sub not ASCII"),
    pytest.param({"sub": 42}, id="sub a number"),
    pytest.param({"sub": 10**40}, id="sub a huge number"),
    pytest.param({"sub": True}, id="sub a boolean"),
    pytest.param({"sub": None}, id="sub null"),
    pytest.param({"sub": ["user-1"]}, id="sub a list"),
    pytest.param({"sub": {"id": "user-1"}}, id="sub an object"),
    pytest.param({"sub": DROP}, id="no sub"),
    # The tenant claim: a tenant name.
    pytest.param({"tenant": 7}, id="tenant a number"),
    pytest.param({"tenant": None}, id="tenant null"),
    pytest.param({"tenant": ["acme"]}, id="tenant a list"),
    pytest.param({"tenant": {"name": "acme"}}, id="tenant an object"),
    pytest.param({"tenant": "acme\n"}, id="tenant with a trailing newline"),
    pytest.param({"tenant": "a" * 64}, id="tenant name too long"),
    pytest.param({"tenant": LONG}, id="tenant of 2000 characters"),
    pytest.param({"tenant": KEY}, id="tenant an API key"),
    pytest.param({"tenant": "nobody"}, id="tenant unknown"),
    # The scope claim: a short string or a list of short strings.
    pytest.param({"scope": "admin " + "x" * 1024}, id="scope string too long"),
    pytest.param({"scope": ["detect"] * 65}, id="scope list too long"),
    pytest.param({"scope": ["x" * 129]}, id="scope item too long"),
    pytest.param({"scope": [""]}, id="scope item empty"),
    pytest.param({"scope": "detect\tadmin"}, id="scope with a tab"),
    pytest.param({"scope": None}, id="scope null"),
    pytest.param({"scope": 7}, id="scope a number"),
    pytest.param({"scope": {"admin": True}}, id="scope an object"),
    pytest.param({"scope": [1, "admin"]}, id="scope list with a number"),
    # Registered claims.
    pytest.param({"iss": 7}, id="iss a number"),
    pytest.param({"iss": [ISSUER]}, id="iss a list"),
    pytest.param({"iss": None}, id="iss null"),
    pytest.param({"aud": 7}, id="aud a number"),
    pytest.param({"aud": [7]}, id="aud a list of numbers"),
    pytest.param({"aud": {"a": AUDIENCE}}, id="aud an object"),
    pytest.param({"aud": None}, id="aud null"),
    pytest.param({"exp": str(NOW + 300)}, id="exp a numeric string"),
    pytest.param({"exp": True}, id="exp a boolean"),
    pytest.param({"exp": float("inf")}, id="exp infinite"),
    pytest.param({"exp": float("nan")}, id="exp NaN"),
    pytest.param({"exp": 10**400}, id="exp a huge integer"),
    pytest.param({"exp": [NOW + 300]}, id="exp a list"),
    pytest.param({"exp": None}, id="exp null"),
    pytest.param({"iat": DROP}, id="no iat"),
    pytest.param({"iat": str(NOW)}, id="iat a numeric string"),
    pytest.param({"iat": At(600)}, id="iat in the future"),
    pytest.param({"iat": float("-inf")}, id="iat minus infinity"),
    pytest.param({"iat": -(10**400)}, id="iat a huge negative integer"),
    pytest.param({"iat": 1.5, "exp": 10**400}, id="float iat and huge exp"),
    pytest.param({"iat": None}, id="iat null"),
    pytest.param({"nbf": str(NOW)}, id="nbf a numeric string"),
    pytest.param({"nbf": At(600)}, id="nbf in the future"),
    pytest.param({"nbf": {"t": 1}}, id="nbf an object"),
    pytest.param({"jti": 7}, id="jti a number"),
    # Lifetime: exp - iat at most WARDEN_JWT_MAX_LIFETIME_SECONDS.
    pytest.param({"iat": At(0), "exp": At(MAX_LIFETIME + 1)}, id="one second too long-lived"),
    pytest.param({"iat": At(-30 * 86_400), "exp": At(60)}, id="issued a month ago"),
    pytest.param({"iat": At(0), "exp": At(10 * 365 * 86_400)}, id="valid for ten years"),
]


@pytest.mark.parametrize("changes", REFUSED)
def test_when_a_signed_claim_has_the_wrong_type_size_or_shape_then_invalid_token(
    verifier: JwtVerifier, signed: Sign, changes: dict[str, object]
) -> None:
    with pytest.raises(InvalidToken) as refused:
        verifier.authenticate(signed(payload(**changes)))
    assert refused.value.code == "invalid_token"
    assert isinstance(refused.value, Unauthenticated)
    subject = refused.value.subject  # the signature verified: the audit record gets a bounded marker
    assert subject is not None
    assert len(subject) <= 40
    assert LONG not in subject
    assert "wdn_" not in subject
    assert LONG not in refused.value.message
    assert KEY not in refused.value.message


ACCEPTED: list[Any] = [
    pytest.param({"sub": "u" * 255}, Scope.DETECT, id="sub of 255 characters"),
    pytest.param({"sub": "auth0|5f7c8ec7c33c6c004bbafe82"}, Scope.DETECT, id="sub auth0-style"),
    pytest.param({"sub": "someone@example.com"}, Scope.DETECT, id="sub an e-mail address"),
    pytest.param({"scope": ""}, Scope.DETECT, id="scope empty string"),
    pytest.param({"scope": []}, Scope.DETECT, id="scope empty list"),
    pytest.param({"scope": "openid detect admin"}, Scope.ADMIN, id="scope string with admin"),
    pytest.param({"scope": ["detect"] * 64}, Scope.DETECT, id="scope list of 64"),
    pytest.param({"aud": ["other", AUDIENCE]}, Scope.DETECT, id="aud list naming us"),
    pytest.param({"iat": At(0), "exp": At(MAX_LIFETIME)}, Scope.DETECT, id="lifetime exactly the maximum"),
    pytest.param({"iat": At(-0.5), "exp": At(60.25)}, Scope.DETECT, id="fractional NumericDates"),
    pytest.param({"jti": "abc", "nbf": At(-10), "extra": [{"any": None}]}, Scope.DETECT, id="other claims"),
]


@pytest.mark.parametrize(("changes", "scope"), ACCEPTED)
def test_when_the_claims_are_well_formed_then_the_principal_carries_the_subject(
    verifier: JwtVerifier, signed: Sign, changes: dict[str, object], scope: Scope
) -> None:
    claims = payload(**changes)
    principal = verifier.authenticate(signed(claims))
    assert (principal.tenant_name, principal.key_id, principal.scope) == ("acme", f"jwt:{claims['sub']}", scope)


def test_when_the_signature_does_not_verify_then_no_subject_is_kept(verifier: JwtVerifier, signed: Sign) -> None:
    header, _, signature = signed(payload(sub=LONG)).split(".")
    forged = f"{header}.{b64json(payload(sub='someone-else'))}.{signature}"
    with pytest.raises(InvalidToken) as refused:
        verifier.authenticate(forged)
    assert refused.value.subject is None


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("eyJ" + "a" * MAX_TOKEN_BYTES + ".e30.x", id="over the size limit"),
        pytest.param("eyJhbGciOiJSUzI1NiJ9.é.x", id="not ASCII"),
        pytest.param(base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode() + ".e30.x", id="nested header"),
        pytest.param(f"{b64json({'alg': 'RS256', 'kid': ['rsa-1']})}.e30.x", id="kid a list"),
        pytest.param(f"{b64json({'alg': 'RS256', 'kid': {'k': 1}})}.e30.x", id="kid an object"),
        pytest.param(f"{b64json({'alg': ['RS256'], 'kid': RSA_KID})}.e30.x", id="alg a list"),
        pytest.param("eyJ9..", id="empty segments"),
    ],
)
def test_when_the_token_is_oversized_or_its_header_is_odd_then_invalid_token(verifier: JwtVerifier, token: str) -> None:
    with pytest.raises(InvalidToken) as refused:
        verifier.authenticate(token)
    assert refused.value.subject is None


def test_when_the_signed_payload_is_not_an_object_then_invalid_token(
    verifier: JwtVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    for body in (b"[1, 2]", b'"text"', b"7", b"null", b"\xff\xfe", b"[" * 2500 + b"]" * 2500):
        token = jwt.api_jws.encode(body, rsa_key, algorithm="RS256", headers={"kid": RSA_KID})
        with pytest.raises(InvalidToken):
            verifier.authenticate(token)


@pytest.mark.parametrize(
    ("subject", "marker"),
    [
        ("user-1", "jwt:user-1"),
        (LONG, "jwt-sha256:"),
        (KEY, "jwt-sha256:"),
        ("\ud800", "jwt-sha256:"),
        (42, "jwt-invalid:int"),
        ([KEY], "jwt-invalid:list"),
        (None, "jwt-invalid:missing"),
    ],
)
def test_a_subject_marker_is_bounded_and_keeps_no_key(subject: object, marker: str) -> None:
    made = subject_marker(subject)
    assert made.startswith(marker)
    assert len(made) <= 40
    assert "wdn_" not in made


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
CLAIMS = ("sub", "tenant", "scope", "iss", "aud", "exp", "iat", "nbf", "jti")


@pytest.mark.parametrize("claim", CLAIMS)
def test_any_json_value_in_a_claim_gives_a_principal_or_invalid_token(
    verifier: JwtVerifier, signed: Sign, claim: str
) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=JSON, others=st.dictionaries(st.sampled_from(CLAIMS), JSON, max_size=2))
    def check(value: object, others: dict[str, object]) -> None:
        kept: str | None
        try:
            kept = verifier.authenticate(signed(payload(**{**others, claim: value}))).key_id
        except InvalidToken as refused:  # any other exception fails the property
            kept = refused.subject
        assert kept is None or len(kept) <= 4 + 255

    check()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=200).map(lambda text: "eyJ" + text) | st.from_regex(r"eyJ[\w.-]{0,300}", fullmatch=True))
def test_any_text_shaped_like_a_token_gives_invalid_token(verifier: JwtVerifier, token: str) -> None:
    with pytest.raises(InvalidToken):
        verifier.authenticate(token)


# --- audience and lifetime settings ---


def test_when_an_issuer_has_no_audience_then_start_up_fails_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="WARDEN_JWT_AUDIENCE is required with WARDEN_JWT_ISSUER"):
        load_settings(data_dir=tmp_path, jwt_issuer=ISSUER, jwt_public_key_file=tmp_path / "k.pem")


def test_when_the_audience_is_explicitly_optional_then_any_audience_is_accepted(
    tenants: Services, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, signed: Sign
) -> None:
    settings_ = load_settings(data_dir=tmp_path, jwt_issuer=ISSUER, jwt_audience_optional=True)
    assert settings_.jwt_audience is None
    lenient = JwtVerifier.from_files(
        tenants.tenants,
        issuer=ISSUER,
        audience=settings_.jwt_audience,
        jwks_file=write_jwks(tmp_path / "jwks.json", rsa_key, ec_key),
        public_key_file=None,
        algorithms=ALGORITHMS,
        max_lifetime_seconds=settings_.jwt_max_lifetime_seconds,
        tenant_claim="tenant",
        scope_claim="scope",
    )
    for audience in ("some-other-service", DROP):
        assert lenient.authenticate(signed(payload(aud=audience))).tenant_name == "acme"


@pytest.mark.parametrize("seconds", [0, 59])
def test_when_the_maximum_lifetime_is_below_a_minute_then_the_settings_are_refused(
    tmp_path: Path, seconds: int
) -> None:
    with pytest.raises(InvalidArgument, match="jwt_max_lifetime_seconds"):
        load_settings(data_dir=tmp_path, jwt_max_lifetime_seconds=seconds)


def test_when_the_maximum_lifetime_is_lowered_then_longer_tokens_are_refused(
    tenants: Services, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, signed: Sign
) -> None:
    strict = JwtVerifier.from_files(
        tenants.tenants,
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_file=write_jwks(tmp_path / "jwks.json", rsa_key, ec_key),
        public_key_file=None,
        algorithms=ALGORITHMS,
        max_lifetime_seconds=600,
        tenant_claim="tenant",
        scope_claim="scope",
    )
    now = int(time.time())
    assert strict.authenticate(signed(payload(iat=now, exp=now + 600))).tenant_name == "acme"
    with pytest.raises(InvalidToken, match="longer than 600 seconds"):
        strict.authenticate(signed(payload(iat=now, exp=now + 601)))


# --- through HTTP: the in-process app, its error mapping and its audit trail ---


@pytest.fixture
def app_services(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Iterator[Services]:
    """JWT-enabled services over SQLite with tenant ``acme`` and its model ``tiny``."""
    with database_url("sqlite", tmp_path) as url:
        services = open_services(
            Settings(
                data_dir=tmp_path / "data",
                database_url=url,
                jwt_issuer=ISSUER,
                jwt_audience=AUDIENCE,
                jwt_jwks_file=write_jwks(tmp_path / "jwks.json", rsa_key, ec_key),
            )
        )
        try:
            services.tenants.create_tenant("acme")
            services.registry.push(services.tenants.tenant_id("acme"), "tiny", tiny_graph(0.9))
            yield services
        finally:
            services.close()


HTTP_CASES: list[Any] = [
    pytest.param({"sub": LONG}, id="sub of 2000 characters"),
    pytest.param({"sub": KEY}, id="sub is an API key"),
    pytest.param({"sub": 12}, id="sub a number"),
    pytest.param({"tenant": ["acme"]}, id="tenant a list"),
    pytest.param({"scope": {"admin": 1}}, id="scope an object"),
    pytest.param({"exp": At(30 * 86_400)}, id="lives a month"),
    pytest.param({"sub": LONG, "pad": "x" * 2500}, id="over 4 KiB, under the token limit"),
]


@pytest.mark.parametrize("changes", HTTP_CASES)
def test_when_a_refused_token_calls_detect_then_401_json_audited_with_a_bounded_subject_and_nothing_ran(
    app_services: Services, signed: Sign, changes: dict[str, object]
) -> None:
    app = create_app(app_services)
    request_id = uuid.uuid4().hex
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post(
            "/v1/models/tiny/detect",
            content=b"not read",
            headers={
                "Authorization": f"Bearer {signed(payload(**changes))}",
                "Content-Type": "image/jpeg",
                "X-Request-ID": request_id,
            },
        )
        loads = app.state.engine.residency.stats().loads
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_token")
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="warden"'
    assert loads == 0  # refused before any model was touched
    assert app_services.audit.flush(timeout=30)
    (entry,) = list(app_services.audit.scan(AuditFilter(request_id=request_id)))
    event = entry.event
    assert (event.status, event.error_code, event.key_id, event.tenant) == (401, "invalid_token", None, None)
    subject = event.details["jwt_subject"]
    assert isinstance(subject, str)
    assert len(subject) <= 40
    everything = json.dumps([e.event.details for e in app_services.audit.scan(AuditFilter())]) + repr(event)
    assert LONG not in everything
    assert KEY not in everything


def test_when_a_well_formed_token_is_refused_for_its_lifetime_then_the_record_names_its_subject(
    app_services: Services, signed: Sign
) -> None:
    request_id = uuid.uuid4().hex
    token = signed(payload(sub="alice", exp=int(time.time()) + 2 * 86_400))
    with TestClient(create_app(app_services)) as client:
        answer = client.get("/v1/models", headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id})
    assert answer.status_code == 401
    assert app_services.audit.flush(timeout=30)
    (entry,) = list(app_services.audit.scan(AuditFilter(request_id=request_id)))
    assert entry.event.details["jwt_subject"] == "jwt:alice"


def test_when_a_well_formed_token_calls_detect_then_its_subject_is_the_records_key_id(
    app_services: Services, signed: Sign
) -> None:
    request_id = uuid.uuid4().hex
    with TestClient(create_app(app_services)) as client:
        answer = client.post(
            "/v1/models/tiny/detect",
            content=SAMPLE_IMAGE.read_bytes(),
            headers={
                "Authorization": f"Bearer {signed(payload(sub='u' * 255))}",
                "Content-Type": "image/jpeg",
                "X-Request-ID": request_id,
            },
        )
    assert answer.status_code == 200, answer.text
    (entry,) = list(app_services.audit.scan(AuditFilter(request_id=request_id)))
    assert (entry.event.key_id, entry.event.authenticator, entry.event.status) == ("jwt:" + "u" * 255, "jwt", 200)
