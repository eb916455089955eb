"""Who is calling: professionals (CPS challenge, or a structure vouching), patients, the admin.

Professionals sign a fresh single-use challenge with the CPS authentication key (INTERNAL
AUTHENTICATE: RSA PKCS#1 v1.5 over SHA-256); the certificate must chain to the test root
through PERSONNES and be valid now. A structure's server certificate (ORGANISATIONS) may
vouch for one of its members (indirect mode). Patients log in with the password given at
creation plus a one-time code sent through a pluggable `CodeSender`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from bifente.apdu.identity import mask_nir
from bifente.simulators.dmp.codes import AccessMode, Reason, Refused
from bifente.simulators.dmp.directory import Directory
from bifente.simulators.dmp.rules import Professional
from bifente.simulators.pki import ca_certificate

__all__ = [
    "CHALLENGE_TTL",
    "SESSION_TTL",
    "Challenges",
    "CodeSender",
    "Grant",
    "OutboxCodeSender",
    "PatientLogins",
    "PatientSession",
    "ProfessionalSession",
    "Sessions",
    "authenticate_professional",
    "generate_password",
    "hash_password",
    "verify_password",
]

CHALLENGE_TTL = 60
SESSION_TTL = 30 * 60
PATIENT_SESSION_TTL = 15 * 60
CODE_TTL = 10 * 60
CODE_TRIES = 3
MAX_PENDING = 10_000  # outstanding challenges / pending logins kept in memory at most


class Challenges:
    """Fresh, single-use challenges (32 random bytes each)."""

    def __init__(self) -> None:
        self._issued: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def issue(self, now: float) -> bytes:
        """A new challenge valid for CHALLENGE_TTL seconds."""
        challenge = secrets.token_bytes(32)
        with self._lock:
            if len(self._issued) >= MAX_PENDING:
                self._issued = {c: t for c, t in self._issued.items() if t > now}
                while len(self._issued) >= MAX_PENDING:  # still full: drop the oldest
                    self._issued.pop(next(iter(self._issued)))
            self._issued[challenge] = now + CHALLENGE_TTL
        return challenge

    def take(self, challenge: bytes, now: float) -> bool:
        """Spend a challenge: True once if it was issued here and has not expired."""
        with self._lock:
            expires = self._issued.pop(challenge, None)
        return expires is not None and now <= expires


@dataclass
class Grant:
    """What a session may do on one record until `expires` (a consent, or an emergency)."""

    expires: float
    express: bool = False
    mode: AccessMode = AccessMode.NORMAL
    reason: str = ""


@dataclass
class ProfessionalSession:
    """An authenticated professional's session and the grants it holds."""

    token: str = field(repr=False)
    professional: Professional
    expires: float
    grants: dict[tuple[str, str], Grant] = field(default_factory=dict, repr=False)
    emergency: dict[str, Grant] = field(default_factory=dict, repr=False)

    def grant(self, ins: str, action: str, now: float) -> Grant | None:
        """A live consent grant for this record and action."""
        g = self.grants.get((ins, action))
        return g if g is not None and now <= g.expires else None


@dataclass
class PatientSession:
    """A patient logged in to their own record."""

    token: str = field(repr=False)
    ins: str = field(repr=False)
    expires: float


class Sessions:
    """Bearer tokens in memory: a host restart ends sessions (clients authenticate again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, ProfessionalSession | PatientSession] = {}

    def _prune(self, now: float) -> None:
        if len(self._sessions) > MAX_PENDING:
            self._sessions = {t: s for t, s in self._sessions.items() if s.expires > now}

    def open_professional(self, prof: Professional, now: float) -> ProfessionalSession:
        """A new professional session."""
        session = ProfessionalSession(secrets.token_urlsafe(32), prof, now + SESSION_TTL)
        with self._lock:
            self._prune(now)
            self._sessions[session.token] = session
        return session

    def open_patient(self, ins: str, now: float) -> PatientSession:
        """A new patient session."""
        session = PatientSession(secrets.token_urlsafe(32), ins, now + PATIENT_SESSION_TTL)
        with self._lock:
            self._prune(now)
            self._sessions[session.token] = session
        return session

    def get(self, token: str, now: float) -> ProfessionalSession | PatientSession | None:
        """The live session of a token, or None."""
        with self._lock:
            session = self._sessions.get(token)
            if session is not None and now > session.expires:
                del self._sessions[token]
                return None
        return session

    def end(self, token: str) -> None:
        """Log out."""
        with self._lock:
            self._sessions.pop(token, None)


# -- professionals -------------------------------------------------------------------------
def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise Refused(Reason.BAD_REQUEST, f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise Refused(Reason.BAD_REQUEST, f"{what} is not valid base64") from None


def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _verify_chain(cert: x509.Certificate, intermediate: x509.Certificate,
                  when: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise Refused(Reason.CERTIFICATE_EXPIRED, "the certificate is not valid now")
    verifier = (PolicyBuilder().store(Store([ca_certificate("root")])).time(when)
                .build_client_verifier())
    try:
        chain = verifier.verify(cert, [intermediate]).chain
    except VerificationError as exc:
        raise Refused(Reason.CERTIFICATE_INVALID,
                      f"the certificate does not chain to the test root: {exc}") from None
    if len(chain) != 3 or chain[1] != intermediate:
        raise Refused(Reason.CERTIFICATE_INVALID, "unexpected certificate path")


def _verify_signature(cert: x509.Certificate, challenge: bytes, signature: bytes) -> None:
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, challenge, ec.ECDSA(hashes.SHA256()))
        else:
            raise InvalidSignature
    except InvalidSignature:
        raise Refused(Reason.SIGNATURE_INVALID,
                      "the signature over the challenge does not verify") from None


def authenticate_professional(body: dict[str, object], *, challenges: Challenges,
                              directory: Directory, now: float,
                              on_certificate: Callable[[x509.Certificate], None] | None = None
                              ) -> Professional:
    """Check a challenge response (direct CPS, or a structure vouching for `user`)."""
    challenge = _b64(body.get("challenge"), "challenge")
    der = _b64(body.get("certificate"), "certificate")
    signature = _b64(body.get("signature"), "signature")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise Refused(Reason.BAD_REQUEST, "user must be a national id string")
    if not challenges.take(challenge, now):
        raise Refused(Reason.CHALLENGE_INVALID, "unknown, used or expired challenge")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise Refused(Reason.CERTIFICATE_INVALID, "the certificate is not DER X.509") from None
    if on_certificate is not None:
        on_certificate(cert)
    personnes, organisations = ca_certificate("personnes"), ca_certificate("organisations")
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    if cert.issuer == personnes.subject:
        _verify_chain(cert, personnes, when)
        _verify_signature(cert, challenge, signature)
        if user is not None:
            raise Refused(Reason.BAD_REQUEST, "user is for structure certificates only")
        national_id = _attr(cert, NameOID.SERIAL_NUMBER)
        prof = directory.professional(
            national_id, structure_id=_attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME))
        if prof is None:
            raise Refused(Reason.UNKNOWN_PROFESSIONAL, "not in the (stand-in) directory")
        title = _attr(cert, NameOID.TITLE)  # the profession, as the certificate says
        return prof if not title else replace(prof, profession=title)
    if cert.issuer == organisations.subject:
        _verify_chain(cert, organisations, when)
        _verify_signature(cert, challenge, signature)
        structure_id = _attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME)
        structure = directory.structures.get(structure_id)
        if structure is None or not structure.indirect_auth:
            raise Refused(Reason.STRUCTURE_NOT_TRUSTED,
                          "this structure may not vouch for users (indirect mode)")
        if not user:
            raise Refused(Reason.BAD_REQUEST, "indirect mode needs the user's national id")
        if user not in directory.professionals:
            raise Refused(Reason.UNKNOWN_PROFESSIONAL, "not in the (stand-in) directory")
        if not directory.is_member(user, structure_id):
            raise Refused(Reason.NOT_MEMBER_OF_STRUCTURE,
                          "the user has no practice situation in this structure")
        prof = directory.professional(user, structure_id=structure_id, auth_mode="indirect")
        assert prof is not None
        return prof
    raise Refused(Reason.CERTIFICATE_INVALID,
                  "not issued by the test PERSONNES or ORGANISATIONS CA")


# -- patients --------------------------------------------------------------------------------
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def generate_password() -> str:
    """A password to hand to the patient: 12 characters in groups of four."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return "-".join(chars[i:i + 4] for i in range(0, 12, 4))


def hash_password(password: str) -> str:
    """scrypt$n$r$p$salt$hash (stdlib hashlib.scrypt)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + "$".join(
        base64.b64encode(x).decode() for x in (salt, digest))


_DUMMY_HASH = hash_password(generate_password())


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check (a dummy hash is checked when there is no record)."""
    scheme, n, r, p, salt, digest = (stored or _DUMMY_HASH).split("$")
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32, n=int(n),
                         r=int(r), p=int(p))
    return hmac.compare_digest(got, base64.b64decode(digest)) and stored is not None


class CodeSender(Protocol):
    """Delivers a patient's one-time login code (outbox file now; mail, terminal later)."""

    name: str

    def send(self, ins: str, code: str) -> None:
        """Deliver the code to the patient."""
        ...


def _recipient(ins: str) -> str:
    return hashlib.sha256(b"bifente-dmp-outbox:" + ins.encode()).hexdigest()[:24]


class OutboxCodeSender:
    """Writes codes to `<data>/outbox/codes.jsonl` (a spool, keyed by a hash of the INS)."""

    name = "outbox"

    def __init__(self, folder: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = folder / "codes.jsonl"
        self._clock = clock
        self._lock = threading.Lock()

    def send(self, ins: str, code: str) -> None:
        """Append the code to the outbox."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": self._clock(), "to": _recipient(ins),
                           "patient": mask_nir(ins), "code": code})
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def last_code(self, ins: str) -> str | None:
        """The last code sent to this patient (for --test-mode only)."""
        if not self.path.exists():
            return None
        to, found = _recipient(ins), None
        with self._lock:
            for line in self.path.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if entry["to"] == to:
                    found = entry["code"]
        return found


@dataclass
class _PendingLogin:
    ins: str = field(repr=False)
    code: str = field(repr=False)
    expires: float
    tries_left: int = CODE_TRIES


class PatientLogins:
    """Logins waiting for their one-time code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, _PendingLogin] = {}
        self._issued: dict[str, _PendingLogin] = {}  # by INS: codes shown on a terminal

    def issue(self, ins: str, now: float) -> tuple[str, float]:
        """(6-digit code, expiry) handed out ahead of the password step (shown on a terminal).

        One per patient (a new one replaces the last); the next login with the right password
        takes it instead of sending a code, so it is spent like any other code.
        """
        code = f"{secrets.randbelow(10**6):06d}"
        with self._lock:
            if len(self._issued) >= MAX_PENDING:
                self._issued = {k: v for k, v in self._issued.items() if v.expires > now}
            self._issued[ins] = _PendingLogin(ins, code, now + CODE_TTL)
        return code, now + CODE_TTL

    def start(self, ins: str, now: float) -> tuple[str, str, bool]:
        """(login id, 6-digit code, issued ahead) for a patient whose password was right."""
        login = secrets.token_urlsafe(16)
        with self._lock:
            ahead = self._issued.pop(ins, None)
            if ahead is not None and now > ahead.expires:
                ahead = None
            pending = ahead or _PendingLogin(ins, f"{secrets.randbelow(10**6):06d}",
                                             now + CODE_TTL)
            if len(self._pending) >= MAX_PENDING:
                self._pending = {k: v for k, v in self._pending.items() if v.expires > now}
            self._pending[login] = pending
        return login, pending.code, ahead is not None

    def finish(self, login: str, code: str, now: float) -> tuple[str | None, str | None]:
        """(ins, None) when the code is right; (ins or None, why) otherwise."""
        with self._lock:
            pending = self._pending.get(login)
            if pending is None or now > pending.expires:
                self._pending.pop(login, None)
                return None, "unknown or expired login"
            if hmac.compare_digest(pending.code.encode(), code.encode()):
                del self._pending[login]
                return pending.ins, None
            pending.tries_left -= 1
            if pending.tries_left <= 0:
                del self._pending[login]
            return pending.ins, "wrong code"
