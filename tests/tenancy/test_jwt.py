"""JWT bearer tokens: verified offline against a JWKS file or a PEM key, mapped to principals of real tenants.

Tokens are signed with PyJWT by keys made here; forged tokens (``alg: none``,
HMAC keyed with the public key, tampered claims) are crafted by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.api.conftest import tiny_graph
from tests.backends import BACKENDS, database_url
from warden.api import create_app
from warden.errors import Forbidden, InvalidArgument, Unauthenticated
from warden.services import Services, open_services
from warden.settings import Settings
from warden.tenancy import Authenticator, JwtVerifier, Principal, Scope

ISSUER = "https://idp.example.com/"
AUDIENCE = "warden"
ALGORITHMS = Settings().jwt_algorithms
MAX_LIFETIME = Settings().jwt_max_lifetime_seconds
RSA_KID = "rsa-1"
EC_KID = "ec-1"

Signer = Callable[..., str]


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    """An RSA key the issuer never published."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def write_jwks(path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Path:
    keys = [
        {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": RSA_KID, "use": "sig", "alg": "RS256"},
        {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": EC_KID, "use": "sig", "alg": "ES256"},
    ]
    path.write_text(json.dumps({"keys": keys}))
    return path


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode())


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for tenant ``acme``; a change to ``None`` drops that claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "tenant": "acme",
        "iat": now,
        "exp": now + 300,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="module")
def sign(rsa_key: rsa.RSAPrivateKey) -> Signer:
    """Sign claims (default: valid ones) with the issuer's RSA key, kid ``rsa-1``, RS256."""

    def signer(
        payload: dict[str, Any] | None = None,
        *,
        key: Any = rsa_key,
        algorithm: str = "RS256",
        kid: str | None = RSA_KID,
    ) -> str:
        headers = {"kid": kid} if kid is not None else None
        return jwt.encode(claims() if payload is None else payload, key, algorithm=algorithm, headers=headers)

    return signer


@pytest.fixture
def tenants(services: Services) -> Services:
    """``acme`` and ``other`` active, ``frozen`` suspended."""
    for name in ("acme", "other", "frozen"):
        services.tenants.create_tenant(name)
    services.tenants.set_status("frozen", "suspended")
    return services


@pytest.fixture
def verifier(
    tenants: Services, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> JwtVerifier:
    return JwtVerifier.from_files(
        tenants.tenants,
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_file=write_jwks(tmp_path / "jwks.json", rsa_key, ec_key),
        public_key_file=None,
        algorithms=ALGORITHMS,
        max_lifetime_seconds=MAX_LIFETIME,
        tenant_claim="tenant",
        scope_claim="scope",
    )


@pytest.fixture
def pem_verifier(tenants: Services, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> JwtVerifier:
    pem = tmp_path / "issuer.pem"
    pem.write_text(public_pem(rsa_key))
    return JwtVerifier.from_files(
        tenants.tenants,
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_file=None,
        public_key_file=pem,
        algorithms=ALGORITHMS,
        max_lifetime_seconds=MAX_LIFETIME,
        tenant_claim="tenant",
        scope_claim="scope",
    )


def test_when_a_valid_rs256_token_is_presented_then_the_principal_is_of_its_tenant(
    tenants: Services, verifier: JwtVerifier, sign: Signer
) -> None:
    principal = verifier.authenticate(sign())
    assert principal == Principal(
        tenant_id=tenants.tenants.tenant_id("acme"),
        tenant_name="acme",
        key_id="jwt:user-1",
        scope=Scope.DETECT,
        authenticator="jwt",
    )
    assert not principal.is_operator


def test_when_a_valid_es256_token_is_presented_then_its_kid_selects_the_ec_key(
    verifier: JwtVerifier, sign: Signer, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    principal = verifier.authenticate(sign(claims(tenant="other"), key=ec_key, algorithm="ES256", kid=EC_KID))
    assert (principal.tenant_name, principal.scope, principal.authenticator) == ("other", Scope.DETECT, "jwt")


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        pytest.param("admin", Scope.ADMIN, id="admin string"),
        pytest.param("detect admin", Scope.ADMIN, id="space-separated string"),
        pytest.param(["detect", "admin"], Scope.ADMIN, id="list"),
        pytest.param("detect", Scope.DETECT, id="detect string"),
        pytest.param(["detect"], Scope.DETECT, id="detect list"),
        pytest.param("administrator superadmin", Scope.DETECT, id="admin only as a substring"),
        pytest.param("ADMIN", Scope.DETECT, id="admin in capitals"),
        pytest.param(None, Scope.DETECT, id="no scope claim"),
    ],
)
def test_when_the_scope_claim_grants_admin_then_the_principal_is_admin(
    verifier: JwtVerifier, sign: Signer, scope: object, expected: Scope
) -> None:
    assert verifier.authenticate(sign(claims(scope=scope))).scope is expected


def test_when_the_tenant_and_scope_claims_are_renamed_then_those_names_are_read(
    tenants: Services, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, sign: Signer
) -> None:
    custom = JwtVerifier.from_files(
        tenants.tenants,
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_file=write_jwks(tmp_path / "jwks.json", rsa_key, ec_key),
        public_key_file=None,
        algorithms=ALGORITHMS,
        max_lifetime_seconds=MAX_LIFETIME,
        tenant_claim="org",
        scope_claim="roles",
    )
    principal = custom.authenticate(sign(claims(tenant="acme", org="other", roles=["admin"], scope="detect")))
    assert (principal.tenant_name, principal.scope) == ("other", Scope.ADMIN)
    with pytest.raises(Unauthenticated, match="'org' claim"):
        custom.authenticate(sign(claims(tenant="acme")))


def forge_none(payload: dict[str, Any]) -> str:
    """An unsigned token: header ``{"alg": "none"}``, the payload, an empty signature."""
    return f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(payload)}."


def forge_hmac(payload: dict[str, Any], secret: str, kid: str | None = RSA_KID) -> str:
    """HS256 keyed with ``secret`` (the issuer's public key PEM): the algorithm-confusion attack."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tamper(token: str, **changes: Any) -> str:
    """Change claims in a signed token, keeping its header and signature."""
    header, payload, signature = token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    body = json.loads(base64.urlsafe_b64decode(padded))
    return f"{header}.{b64json({**body, **changes})}.{signature}"


Forger = Callable[[Signer, rsa.RSAPrivateKey, rsa.RSAPrivateKey], str]

FORGED: list[Any] = [
    pytest.param(lambda sign, key, stranger: forge_none(claims()), id="alg none"),
    pytest.param(lambda sign, key, stranger: forge_none(claims()).rstrip(".") + ".e30", id="alg none with junk sig"),
    pytest.param(lambda sign, key, stranger: forge_hmac(claims(), public_pem(key)), id="HS256 keyed with public PEM"),
    pytest.param(
        lambda sign, key, stranger: forge_hmac(claims(), public_pem(key), kid=None), id="HS256 keyed with PEM, no kid"
    ),
    pytest.param(lambda sign, key, stranger: sign(claims(iss="https://evil.example.com/")), id="wrong issuer"),
    pytest.param(lambda sign, key, stranger: sign(claims(iss=None)), id="missing issuer"),
    pytest.param(lambda sign, key, stranger: sign(claims(aud="someone-else")), id="wrong audience"),
    pytest.param(lambda sign, key, stranger: sign(claims(aud=None)), id="missing audience"),
    pytest.param(lambda sign, key, stranger: sign(claims(exp=int(time.time()) - 60)), id="expired"),
    pytest.param(lambda sign, key, stranger: sign(claims(exp=None)), id="missing exp"),
    pytest.param(lambda sign, key, stranger: sign(claims(exp="tomorrow")), id="exp not a number"),
    pytest.param(lambda sign, key, stranger: sign(claims(nbf=int(time.time()) + 600)), id="not yet valid"),
    pytest.param(lambda sign, key, stranger: sign(claims(sub=None)), id="missing sub"),
    pytest.param(lambda sign, key, stranger: sign(claims(sub=42)), id="sub not a string"),
    pytest.param(lambda sign, key, stranger: tamper(sign(), tenant="other"), id="tampered tenant"),
    pytest.param(lambda sign, key, stranger: tamper(sign(), scope="admin"), id="tampered scope"),
    pytest.param(lambda sign, key, stranger: tamper(sign(), exp=int(time.time()) + 10**6), id="tampered exp"),
    pytest.param(lambda sign, key, stranger: sign(kid="rsa-2"), id="unknown kid"),
    pytest.param(lambda sign, key, stranger: sign(kid=None), id="no kid with a JWKS"),
    pytest.param(lambda sign, key, stranger: sign(key=stranger), id="signed by an unpublished key"),
    pytest.param(lambda sign, key, stranger: sign(claims(tenant=None)), id="missing tenant"),
    pytest.param(lambda sign, key, stranger: sign(claims(tenant="")), id="empty tenant"),
    pytest.param(lambda sign, key, stranger: sign(claims(tenant=["acme"])), id="tenant not a string"),
    pytest.param(lambda sign, key, stranger: sign(claims(tenant="nobody")), id="tenant that does not exist"),
    pytest.param(lambda sign, key, stranger: sign(claims(tenant="ACME")), id="tenant in capitals"),
    pytest.param(lambda sign, key, stranger: "eyJhbGciOiJSUzI1NiJ9.not-base64!.x", id="garbage payload"),
    pytest.param(lambda sign, key, stranger: "eyJub3QganNvbg.e30.x", id="header not JSON"),
]


@pytest.mark.parametrize("forge", FORGED)
def test_when_a_token_is_forged_or_invalid_then_unauthenticated(
    verifier: JwtVerifier,
    sign: Signer,
    rsa_key: rsa.RSAPrivateKey,
    stranger_key: rsa.RSAPrivateKey,
    forge: Forger,
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.authenticate(forge(sign, rsa_key, stranger_key))


def test_when_the_tenant_is_suspended_then_forbidden(verifier: JwtVerifier, sign: Signer) -> None:
    with pytest.raises(Forbidden, match="suspended"):
        verifier.authenticate(sign(claims(tenant="frozen", scope="admin")))


def test_when_a_suspended_tenant_is_resumed_then_its_tokens_work_again(
    tenants: Services, verifier: JwtVerifier, sign: Signer
) -> None:
    token = sign(claims(tenant="frozen"))
    tenants.tenants.set_status("frozen", "active")
    assert verifier.authenticate(token).tenant_name == "frozen"


@pytest.mark.parametrize("kid", [None, RSA_KID, "anything"], ids=["no kid", "a kid", "an unknown kid"])
def test_when_the_key_is_a_pem_file_then_tokens_verify_whatever_their_kid(
    pem_verifier: JwtVerifier, sign: Signer, kid: str | None
) -> None:
    principal = pem_verifier.authenticate(sign(claims(scope="admin"), kid=kid))
    assert (principal.tenant_name, principal.scope, principal.authenticator) == ("acme", Scope.ADMIN, "jwt")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda key, ec_key: forge_none(claims()), id="alg none"),
        pytest.param(lambda key, ec_key: forge_hmac(claims(), public_pem(key), kid=None), id="HS256 keyed with PEM"),
        pytest.param(lambda key, ec_key: jwt.encode(claims(), ec_key, algorithm="ES256"), id="ES256 by another key"),
        pytest.param(
            lambda key, ec_key: f"{b64json({'alg': 'ES256'})}.{b64json(claims())}.{b64url(b'x' * 64)}",
            id="ES256 header on the RSA PEM",
        ),
        pytest.param(
            lambda key, ec_key: f"{b64json({'alg': 'EdDSA'})}.{b64json(claims())}.{b64url(b'x' * 64)}",
            id="EdDSA header on the RSA PEM",
        ),
    ],
)
def test_when_the_key_is_a_pem_file_then_forged_tokens_are_refused(
    pem_verifier: JwtVerifier,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    token: Callable[[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey], str],
) -> None:
    with pytest.raises(Unauthenticated):
        pem_verifier.authenticate(token(rsa_key, ec_key))


@pytest.mark.parametrize(
    "algorithms",
    [["HS256"], ["RS256", "HS256"], ["HS384"], ["ES256", "HS512"], ["none"], ["RS256", "none"], []],
    ids=lambda a: "+".join(a) or "empty",
)
def test_when_hmac_or_none_algorithms_are_configured_then_invalid_argument(
    tenants: Services, rsa_key: rsa.RSAPrivateKey, algorithms: list[str]
) -> None:
    with pytest.raises(InvalidArgument, match="not allowed"):
        JwtVerifier(
            tenants.tenants,
            issuer=ISSUER,
            audience=AUDIENCE,
            keys={None: rsa_key},
            algorithms=algorithms,
            max_lifetime_seconds=MAX_LIFETIME,
        )


def test_when_settings_configure_hs256_then_the_services_do_not_start(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_jwks_file=write_jwks(tmp_path / "jwks.json", rsa_key, ec_key),
        jwt_algorithms=["RS256", "HS256"],
    )
    with pytest.raises(InvalidArgument, match="HS256"):
        open_services(settings)


@pytest.mark.parametrize("both", [False, True], ids=["neither file", "both files"])
def test_when_not_exactly_one_key_source_is_given_then_invalid_argument(
    tenants: Services, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, both: bool
) -> None:
    pem_file = tmp_path / "issuer.pem"
    pem_file.write_text(public_pem(rsa_key))
    with pytest.raises(InvalidArgument, match="exactly one"):
        JwtVerifier.from_files(
            tenants.tenants,
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_file=write_jwks(tmp_path / "jwks.json", rsa_key, ec_key) if both else None,
            public_key_file=pem_file if both else None,
            algorithms=ALGORITHMS,
            max_lifetime_seconds=MAX_LIFETIME,
            tenant_claim="tenant",
            scope_claim="scope",
        )


@pytest.mark.parametrize(
    "content",
    [
        None,
        "{not json",
        # Regressions: these escaped as PyJWKSetError / AttributeError, or loaded a symmetric key.
        '{"keys": []}',
        '{"keys": [{"kty": "RSA"}]}',
        "[]",
        '{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "s"}]}',
    ],
    ids=["missing file", "not JSON", "no keys", "incomplete key", "a list", "symmetric key"],
)
def test_when_the_jwks_file_is_unusable_then_invalid_argument(
    tenants: Services, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidArgument, match=r"cannot load the JWT keys|symmetric"):
        JwtVerifier.from_files(
            tenants.tenants,
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_file=path,
            public_key_file=None,
            algorithms=ALGORITHMS,
            max_lifetime_seconds=MAX_LIFETIME,
            tenant_claim="tenant",
            scope_claim="scope",
        )


def test_when_a_credential_is_not_a_jwt_then_the_authenticator_checks_api_keys(
    tenants: Services, verifier: JwtVerifier, sign: Signer
) -> None:
    authenticator = Authenticator(tenants.tenants, verifier)
    issued = tenants.tenants.create_key("acme", Scope.ADMIN)
    by_key = authenticator.authenticate(issued.key)
    assert (by_key.tenant_name, by_key.key_id, by_key.authenticator) == ("acme", issued.key_id, "api_key")
    by_token = authenticator.authenticate(sign())
    assert (by_token.tenant_name, by_token.authenticator) == ("acme", "jwt")
    with pytest.raises(Unauthenticated, match="invalid API key"):
        authenticator.authenticate("not-a-key")
    with pytest.raises(Unauthenticated, match="token"):
        authenticator.authenticate(forge_none(claims()))


def test_when_no_issuer_is_configured_then_tokens_are_refused_as_api_keys(tenants: Services, sign: Signer) -> None:
    with pytest.raises(Unauthenticated, match="invalid API key"):
        Authenticator(tenants.tenants).authenticate(sign())
    issued = tenants.tenants.create_key("acme", Scope.DETECT)
    assert tenants.authenticator.authenticate(issued.key).authenticator == "api_key"


# Through HTTP: the same authenticator behind the app's credential extraction and error mapping.


@pytest.fixture(params=BACKENDS)
def jwt_client(
    request: pytest.FixtureRequest, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> Iterator[TestClient]:
    with database_url(request.param, tmp_path) as url:
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            jwt_jwks_file=write_jwks(tmp_path / "jwks.json", rsa_key, ec_key),
        )
        services = open_services(settings)
        try:
            for name in ("acme", "other"):
                services.tenants.create_tenant(name)
            acme, other = services.tenants.tenant_id("acme"), services.tenants.tenant_id("other")
            services.registry.push(acme, "tiny", tiny_graph(0.9))
            services.registry.push(other, "tiny", tiny_graph(0.8))
            services.registry.push(other, "other-only", tiny_graph(0.7))
            with TestClient(create_app(services)) as client:
                yield client
        finally:
            services.close()


def test_when_a_valid_token_calls_the_api_then_only_its_tenants_models_are_listed(
    jwt_client: TestClient, sign: Signer
) -> None:
    answer = jwt_client.get(
        "/v1/models?tenant=other", headers={"Authorization": f"Bearer {sign()}", "X-Tenant": "other"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"models": [{"name": "tiny", "versions": [1], "aliases": {}}]}
    assert "other-only" not in answer.text
    via_header = jwt_client.get("/v1/models", headers={"X-API-Key": sign(claims(tenant="other"))})
    assert [m["name"] for m in via_header.json()["models"]] == ["other-only", "tiny"]


def test_when_an_unsigned_token_calls_the_api_then_401_invalid_token(jwt_client: TestClient) -> None:
    answer = jwt_client.get("/v1/models", headers={"Authorization": f"Bearer {forge_none(claims())}"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_token"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="warden"'
    assert "tiny" not in answer.text


def test_when_a_token_without_admin_scope_calls_the_admin_api_then_403(jwt_client: TestClient, sign: Signer) -> None:
    detect = jwt_client.get("/admin/tenants", headers={"Authorization": f"Bearer {sign()}"})
    assert (detect.status_code, detect.json()["error"]["code"]) == (403, "forbidden")
    admin = jwt_client.get("/admin/tenants", headers={"Authorization": f"Bearer {sign(claims(scope='admin'))}"})
    assert [t["name"] for t in admin.json()] == ["acme"]


@pytest.mark.parametrize(("algorithm", "kid"), [("RS256", EC_KID), ("ES256", RSA_KID)])
def test_when_the_kid_names_a_key_of_another_type_then_unauthenticated_not_a_crash(
    verifier: JwtVerifier,
    sign: Signer,
    ec_key: ec.EllipticCurvePrivateKey,
    rsa_key: rsa.RSAPrivateKey,
    algorithm: str,
    kid: str,
) -> None:
    key = rsa_key if algorithm == "RS256" else ec_key
    with pytest.raises(Unauthenticated):
        verifier.authenticate(sign(key=key, algorithm=algorithm, kid=kid))


@pytest.mark.parametrize("scope", [[{"x": 1}], [["admin"]], [1, "admin"], {"admin": True}, 7, True])
def test_when_the_scope_claim_is_not_a_string_or_a_list_of_strings_then_unauthenticated(
    verifier: JwtVerifier, sign: Signer, scope: object
) -> None:
    with pytest.raises(Unauthenticated, match="'scope' claim"):
        verifier.authenticate(sign(claims(scope=scope)))


def test_when_the_tenant_claim_holds_a_nul_byte_then_unauthenticated(verifier: JwtVerifier, sign: Signer) -> None:
    with pytest.raises(Unauthenticated):
        verifier.authenticate(sign(claims(tenant="ac\x00me")))
