"""Helpers for tests and benchmarks of the reference DMP host (TEST ONLY).

- `ConsentSigner`: signs consent records exactly as the terminal's signer must (the canonical
  form of `consent.canonical_json`, ECDSA P-256 / SHA-256, DER, base64);
- `DmpClient`: a small HTTPS JSON client (http.client, one kept-alive connection);
- `card_login` / `structure_login`: a session opened with a simulated CPS card in process
  (INTERNAL AUTHENTICATE over the card protocol) or the test structure's certificate;
- `test_nir`: valid invented NIRs for test patients.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from bifente.apdu.cps import CpsSession, PinRequest
from bifente.apdu.cps_spec import KeyRef
from bifente.apdu.identity import nir_key
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.transport import InProcessTransport
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.dmp.cda import build_document
from bifente.simulators.dmp.consent import CONSENT_HEADER, canonical_json, encode_header
from bifente.simulators.dmp.generate import STRUCTURE_DIR
from bifente.simulators.dmp.host import DmpHost
from bifente.simulators.pki import load_key
from bifente.simulators.profiles import load_cps

__all__ = [
    "TEST_OID",
    "ConsentSigner",
    "DmpClient",
    "DmpWorld",
    "FakeClock",
    "HttpResult",
    "card_login",
    "national_id",
    "structure_login",
    "test_nir",
]


def test_nir(n: int, *, sex: int = 2, year: int = 85) -> str:
    """A valid invented NIR (test patients) for n in 0..899999: born in March, in the Rhône."""
    body = f"{sex}{year:02d}0369{100 + n // 1000 % 900:03d}{n % 1000:03d}"
    return body + f"{nir_key(body):02d}"


test_nir.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


class ConsentSigner:
    """A terminal's device key, signing consent records as edged must (docs/dmp-api.md)."""

    def __init__(self, device: str = "test-terminal-1",
                 key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.device = device
        self.key = key or ec.generate_private_key(ec.SECP256R1())

    @property
    def public_pem(self) -> str:
        """The public key to enroll on the host."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def record(self, ins: str, professional: str, action: str, *, now: float | None = None,
               lifetime: int = 600, express: bool = False,
               nonce: str | None = None) -> dict[str, object]:
        """A consent record (unsigned)."""
        issued = int(time.time() if now is None else now)
        return {"v": 1, "ins": ins, "professional": professional, "action": action,
                "express": express, "issued": issued, "expires": issued + lifetime,
                "nonce": nonce or base64.b64encode(secrets.token_bytes(16)).decode(),
                "device": self.device}

    def sign(self, record: Mapping[str, object]) -> dict[str, object]:
        """The envelope {"record": ..., "signature": base64 DER ECDSA over the canonical form}."""
        signature = self.key.sign(canonical_json(record), ec.ECDSA(hashes.SHA256()))
        return {"record": dict(record), "signature": base64.b64encode(signature).decode()}

    def header(self, ins: str, professional: str, action: str, *, now: float | None = None,
               lifetime: int = 600, express: bool = False,
               nonce: str | None = None) -> dict[str, str]:
        """A signed consent, ready as request headers."""
        record = self.record(ins, professional, action, now=now, lifetime=lifetime,
                             express=express, nonce=nonce)
        return {CONSENT_HEADER: encode_header(self.sign(record))}


@dataclass
class HttpResult:
    """A response: status, headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> dict[str, object]:
        """The body as JSON (an object: every answer of the host is one)."""
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError(f"not a JSON object: {self.body[:80]!r}")
        return value

    @property
    def reason(self) -> str | None:
        """The refusal reason code, if any."""
        try:
            error = self.json().get("error")
        except ValueError:
            return None
        return error.get("reason") if isinstance(error, dict) else None


class DmpClient:
    """A small HTTPS client for the host (one kept-alive connection, reopened when needed)."""

    def __init__(self, url: str, cafile: Path, token: str | None = None) -> None:
        rest = url.partition("://")[2]
        host, _, port = rest.partition(":")
        self.host, self.port = host, int(port or 443)
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.token = token
        self._conn: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, *, json_body: object = None,
                body: bytes | None = None, headers: Mapping[str, str] | None = None,
                token: str | None = None) -> HttpResult:
        """One request; JSON bodies are encoded, the token sent as Bearer."""
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        bearer = token or self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(self.host, self.port,
                                                         context=self.context, timeout=60)
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                response = self._conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
                continue
            result = HttpResult(response.status, {k.lower(): v for k, v in response.getheaders()},
                                data)
            if result.headers.get("connection", "").lower() == "close":
                self.close()
            return result
        raise AssertionError("unreachable")

    def get(self, path: str, *, headers: Mapping[str, str] | None = None,
            token: str | None = None) -> HttpResult:
        """GET."""
        return self.request("GET", path, headers=headers, token=token)

    def post(self, path: str, json_body: object = None, *, body: bytes | None = None,
             headers: Mapping[str, str] | None = None, token: str | None = None) -> HttpResult:
        """POST (JSON by default)."""
        return self.request("POST", path, json_body=json_body, body=body, headers=headers,
                            token=token)

    def delete(self, path: str, *, headers: Mapping[str, str] | None = None,
               token: str | None = None) -> HttpResult:
        """DELETE."""
        return self.request("DELETE", path, headers=headers, token=token)


def _pin(code: str = "1234") -> Callable[[PinRequest], bytearray]:
    def source(_request: PinRequest) -> bytearray:
        return bytearray(code.encode())
    return source


def card_login(client: DmpClient, profile: str | Cps3Card, *,
               pin: str = "1234") -> HttpResult:
    """Open a session with a simulated CPS card: PIN, then INTERNAL AUTHENTICATE the challenge."""
    card = Cps3Card(profile) if isinstance(profile, str) else profile
    card.power_on()
    session = CpsSession(CardProtocol(InProcessTransport(card)))
    challenge = client.post("/api/auth/challenge").json()["challenge"]
    session.verify_pin(_pin(pin))
    signature = session.authenticate(base64.b64decode(str(challenge)))
    der = session.certificate(KeyRef.AUTHENTICATION).public_bytes(serialization.Encoding.DER)
    return client.post("/api/auth/session", {
        "challenge": challenge, "certificate": base64.b64encode(der).decode(),
        "signature": base64.b64encode(signature).decode()})


def structure_login(client: DmpClient, user: str | None, *,
                    folder: Path = STRUCTURE_DIR) -> HttpResult:
    """Open a session for `user` vouched for by the test structure's certificate (indirect)."""
    key = load_key(folder / "structure.key.pem")
    der = x509.load_pem_x509_certificate((folder / "structure.crt.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    challenge = client.post("/api/auth/challenge").json()["challenge"]
    signature = key.sign(base64.b64decode(str(challenge)), padding.PKCS1v15(), hashes.SHA256())
    body: dict[str, object] = {"challenge": challenge,
                               "certificate": base64.b64encode(der).decode(),
                               "signature": base64.b64encode(signature).decode()}
    if user is not None:
        body["user"] = user
    return client.post("/api/auth/session", body)


TEST_OID = "1.2.250.1.213.1.4.10"  # test cards get the test NIR OID (docs/cards.md)
_patients = itertools.count(1)


class FakeClock:
    """An injectable clock (unix seconds) that tests move forward."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        """The current (fake) time."""
        return self.now

    def advance(self, *, days: float = 0, seconds: float = 0) -> None:
        """Move the clock forward."""
        self.now += days * 86400 + seconds


def national_id(profile: str) -> str:
    """The national id of a CPS test profile."""
    return load_cps(profile).holder.national_id


class DmpWorld:
    """A host, a client, an enrolled terminal and card sessions: the API as a terminal speaks it."""

    def __init__(self, host: DmpHost, clock: FakeClock) -> None:
        self.host = host
        self.clock = clock
        self.client = DmpClient(host.url, host.cafile)
        self.signer = ConsentSigner("terminal-test")
        host.enroll_device(self.signer.device, self.signer.public_pem)
        self.tokens: dict[str, str] = {}

    def close(self) -> None:
        """Close the client's connection."""
        self.client.close()

    # -- professionals ------------------------------------------------------------------
    def token(self, profile: str) -> str:
        """A session token for a CPS profile (logged in once with the simulated card)."""
        if profile not in self.tokens:
            result = card_login(self.client, profile)
            assert result.status == 200, result.body
            self.tokens[profile] = str(result.json()["token"])
        return self.tokens[profile]

    def consent(self, ins: str, profile: str, action: str, *, now: float | None = None,
                lifetime: int = 600, express: bool = False) -> dict[str, str]:
        """A signed consent header for this patient, professional and action (issued now
        on the world's clock unless `now` is given)."""
        return self.signer.header(ins, national_id(profile), action,
                                  now=self.clock() if now is None else now,
                                  lifetime=lifetime, express=express)

    def call(self, method: str, path: str, profile: str | None = None, *,
             consent: str | None = None, ins: str | None = None, json_body: object = None,
             body: bytes | None = None, headers: Mapping[str, str] | None = None,
             token: str | None = None) -> HttpResult:
        """A request as `profile` (with a fresh consent for `consent` when given)."""
        sent = dict(headers or {})
        if consent:
            assert profile and ins
            sent.update(self.consent(ins, profile, consent))
        if profile:
            token = self.token(profile)
        return self.client.request(method, path, json_body=json_body, body=body, headers=sent,
                                   token=token)

    def new_ins(self) -> str:
        """A patient INS not used before in this process."""
        return test_nir(next(_patients))

    def create(self, profile: str = "gp", ins: str | None = None) -> tuple[str, str]:
        """Create a record with consent: (INS, the patient's password)."""
        ins = ins or self.new_ins()
        r = self.call("POST", f"/api/dmp/{ins}", profile, consent="create", ins=ins,
                      json_body={"ins_oid": TEST_OID})
        assert r.status == 201, r.body
        return ins, str(r.json()["patient_password"])

    def cda(self, ins: str, type_code: str = "11488-4", *, author: str = "gp",
            title: str = "Compte rendu", pdf: bytes | None = None, text: str | None = None,
            media_type: str | None = None) -> bytes:
        """A conforming CDA for this patient, authored by `author`."""
        return build_document(ins, TEST_OID, type_code, title, author_id=national_id(author),
                              author_name=load_cps(author).holder.name, pdf=pdf, text=text,
                              media_type=media_type)

    def feed(self, ins: str, profile: str = "gp", type_code: str = "11488-4", *,
             data: bytes | None = None, consent: str | None = "feed",
             query: str = "") -> HttpResult:
        """Feed a document (a conforming CDA unless `data` is given)."""
        body = data if data is not None else self.cda(ins, type_code, author=profile)
        return self.call("POST", f"/api/dmp/{ins}/documents{query}", profile, consent=consent,
                         ins=ins, body=body,
                         headers={"Content-Type": "application/hl7-v3+xml"})

    def fed(self, ins: str, profile: str = "gp", type_code: str = "11488-4",
            query: str = "") -> str:
        """Feed a conforming document and return its id."""
        r = self.feed(ins, profile, type_code, query=query)
        assert r.status == 201, r.body
        document = r.json()["document"]
        assert isinstance(document, dict), r.body
        return str(document["id"])

    def find(self, ins: str, profile: str, *, consent: str | None = "read",
             query: str = "") -> HttpResult:
        """The index as `profile` (with a fresh read consent by default)."""
        return self.call("GET", f"/api/dmp/{ins}/documents{query}", profile, consent=consent,
                         ins=ins)

    def found(self, ins: str, profile: str) -> list[str]:
        """The ids in the index as `profile` sees it."""
        r = self.find(ins, profile)
        assert r.status == 200, r.body
        documents = r.json()["documents"]
        assert isinstance(documents, list), r.body
        return [str(d["id"]) for d in documents]

    # -- patients ---------------------------------------------------------------------------
    def patient(self, ins: str, password: str) -> str:
        """A patient session: password, then the one-time code (needs --test-mode)."""
        r = self.client.post("/api/patient/login", {"ins": ins, "password": password})
        assert r.status == 202, r.body
        code = self.client.get(f"/api/test/last-code?ins={ins}").json()["code"]
        r = self.client.post("/api/patient/login/code", {"login": r.json()["login"],
                                                         "code": code})
        assert r.status == 200, r.body
        return str(r.json()["token"])

    def traces(self, ins: str, patient_token: str) -> list[dict[str, object]]:
        """The record's traces, read by its patient."""
        r = self.client.get("/api/patient/traces", token=patient_token)
        assert r.status == 200, r.body
        traces = r.json()["traces"]
        assert isinstance(traces, list), r.body
        return traces
