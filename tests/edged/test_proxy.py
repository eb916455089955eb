"""The encrypting proxy (M8; docs/messaging.md): real SMTP over TLS, a real operator, no mocks.

The "ordinary mail client" is stdlib smtplib (STARTTLS, AUTH LOGIN/PLAIN); the proxy runs
as a daemon extension (`edged(proxy={...})`); mail goes on to the reference operator
(`bifente.simulators.mail`) and is read back from the recipient's Maildir and opened with the
nurse's key, as her mail client would.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mailbox
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bifente.edged.services import cms, smime
from bifente.edged.services.proxy import (
    ProxyConfigError,
    ProxyServer,
    ProxySettings,
    SealError,
    UserStore,
    extract_code,
    hotp,
    import_seal,
    load_seal,
    totp,
)
from bifente.edged.state.keywrap import KeyWrapper, load_key_wrapper
from bifente.simulators.mail import MailOperator
from bifente.simulators.pki import DATA, ca_certificate, load_key
from bifente.simulators.world import CardsOn, MailOptions, SimulatedWorld
from tests.edged.conftest import Bench, BenchFactory

NURSE = "julie.bernard@cabinet.test"
GP = "claire.martin@cabinet.test"
ALICE = "accueil@cabinet.test"  # a secretary of the practice: no CPS card
BOB = "bob@cabinet.test"
DOMAIN = "cabinet.test"


# -- RFC 6238 -------------------------------------------------------------------------------
# Appendix B: 8 digits; seeds are the ASCII "1234567890" repeated to 20, 32 and 64 bytes.
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
SEEDS = {"sha1": b"1234567890" * 2, "sha256": (b"1234567890" * 4)[:32],
         "sha512": (b"1234567890" * 7)[:64]}


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), RFC6238)
def test_totp_rfc6238_vectors(at: int, sha1: str, sha256: str, sha512: str) -> None:
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        assert totp(SEEDS[digest], at, digits=8, digest=digest) == expected
        # the 6-digit code the proxy uses is the same value mod 10^6
        assert totp(SEEDS[digest], at, digest=digest) == expected[-6:]


def test_hotp_rfc4226_vectors() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922",
                "162583", "399871", "520489"]
    assert [hotp(b"12345678901234567890", i) for i in range(10)] == expected


def test_code_is_read_from_the_subject_prefix() -> None:
    assert extract_code("[code:123456] CR consultation") == ("123456", "CR consultation")
    assert extract_code("  [CODE 654321]Bilan") == ("654321", "Bilan")
    assert extract_code("[code=000001] x") == ("000001", "x")
    assert extract_code("CR consultation") == (None, "CR consultation")
    # a malformed code is not a code, and never travels on
    assert extract_code("Bilan [code:12345]") == (None, "Bilan")
    assert extract_code("Re: [code:123456] x") == ("123456", "Re: x")
    assert extract_code("[code:111111] a [code:222222]") == ("111111", "a")


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mail_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedWorld]:
    """The reference mail operator, in a SimulatedWorld of its own for the module."""
    with SimulatedWorld(None, None, cards=CardsOn.NONE, dmp=False,
                        mail=MailOptions(tmp_path_factory.mktemp("operator"))) as world:
        assert world.mail is not None
        yield world


@pytest.fixture(scope="module")
def op(mail_world: SimulatedWorld) -> MailOperator:
    """The world's mail operator."""
    assert mail_world.mail is not None
    return mail_world.mail


def trust() -> cms.TrustStore:
    return cms.TrustStore(roots=[ca_certificate("root")],
                          intermediates=[ca_certificate("organisations"),
                                         ca_certificate("personnes")])


def proxy_table(world: SimulatedWorld, **changes: Any) -> dict[str, Any]:
    """The world's [proxy] table for the structure mailbox, listening on a free port."""
    return {**world.proxy_table(DOMAIN), "host": "127.0.0.1", "port": 0, "max_failures": 3,
            **changes}


class Setup:
    """A daemon with the proxy, two local users, and helpers to send as they would."""

    def __init__(self, bench: Bench, proxy: ProxyServer, users: dict[str, tuple[str, bytes]],
                 op: MailOperator) -> None:
        self.bench, self.proxy, self.users, self.op = bench, proxy, users, op
        self.tls = ssl.create_default_context(
            cadata=bench.daemon.keystore.ca_certificate_pem.decode())

    def code(self, name: str, at: float | None = None) -> str:
        return totp(self.users[name][1], time.time() if at is None else at)

    def send_sync(self, name: str, msg: EmailMessage, *, login: str | None = None,
                  password: str | None = None, rcpts: list[str] | None = None) -> Any:
        with smtplib.SMTP("127.0.0.1", self.proxy.port, timeout=30) as client:
            client.starttls(context=self.tls)
            client.login(login or name, password or self.users[name][0])
            return client.send_message(msg, to_addrs=rcpts)

    async def send(self, name: str, msg: EmailMessage, **kw: Any) -> Any:
        return await asyncio.to_thread(self.send_sync, name, msg, **kw)

    def audit(self, event: str) -> list[dict[str, Any]]:
        return [r.data() | {"actor": r.actor} for r in self.bench.daemon.audit.records()
                if r.event == event]


def all_mail(op: MailOperator) -> list[Path]:
    root = Path(op.info.ca_file).parent.parent
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name in ("new", "cur")]


def message(sender: str, subject: str, attachment: bytes = b"") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, NURSE, subject
    msg.set_content("Bonjour,\nvoici le compte rendu. Accentué: é à ç.\n")
    if attachment:
        msg.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename="compte-rendu.pdf")
    return msg


def state_key(state: Path) -> KeyWrapper:
    """The state key the edged fixture gives the daemon of `state` (tests/edged/conftest.py)."""
    return load_key_wrapper(state, str(state.parent / f"{state.name}.key" / "state.key"))


async def start(edged: BenchFactory, world: SimulatedWorld, tmp_path: Path,
                **changes: Any) -> Setup:
    op = world.mail
    assert op is not None
    state = tmp_path / "state0"  # what the edged fixture gives its first daemon
    wrapper = state_key(state)
    cert, key = op.structure_certificate(DOMAIN)
    import_seal(state, cert, key, [DATA / "ca" / "test-organisations.crt.pem"], wrapper=wrapper)
    store = UserStore(state, wrapper)
    users = {"alice": store.add("alice", ALICE), "bob": store.add("bob", BOB)}
    store.close()
    bench = await edged(proxy=proxy_table(world, **changes))
    proxy = bench.daemon.services.proxy
    return Setup(bench, proxy, users, op)


@pytest_asyncio.fixture
async def setup(edged: BenchFactory, mail_world: SimulatedWorld, tmp_path: Path) -> Setup:
    return await start(edged, mail_world, tmp_path)


def nurse_inbox(op: MailOperator) -> list[bytes]:
    box = mailbox.Maildir(op.maildir(NURSE), create=False)
    return [box.get_bytes(k) for k in box.iterkeys()]


def clear_nurse(op: MailOperator) -> None:
    box = mailbox.Maildir(op.maildir(NURSE), create=False)
    for key in list(box.iterkeys()):
        box.remove(key)


def nurse() -> cms.SoftwareDecryptor:
    folder = DATA / "cps" / "nurse"
    cert = x509.load_pem_x509_certificate((folder / "aut.crt.pem").read_bytes())
    return cms.SoftwareDecryptor(load_key(folder / "aut.key.pem"), cert)


# -- the way through ------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_valid_code_relayed_signed_by_the_seal_and_encrypted(setup: Setup) -> None:
    op = setup.op
    clear_nurse(op)
    pdf = os.urandom(40_000) + b"\r\n.\r\n"
    code = setup.code("alice")
    reply = await setup.send("alice", message(ALICE, f"[code:{code}] Compte rendu", pdf))
    assert reply == {}
    [raw] = nurse_inbox(op)
    assert code.encode() not in raw.split(b"\n\n", 1)[0]  # not in the delivered headers
    assert b"Compte rendu" in raw and b"voici le compte rendu" not in raw  # encrypted
    opened = smime.open_message(raw, nurse(), trust(), check_sender=False)
    seal = x509.load_pem_x509_certificate(op.structure_certificate(DOMAIN)[0].read_bytes())
    assert opened.encrypted and opened.signer == seal
    assert opened.subject == "Compte rendu"  # the code was stripped, inside too
    assert opened.sender == ALICE and opened.to == (NURSE,)
    assert opened.text == "Bonjour,\nvoici le compte rendu. Accentué: é à ç.\n"
    [attachment] = opened.attachments
    assert attachment.filename == "compte-rendu.pdf" and attachment.data == pdf  # byte-identical
    # the structure can read its own copy (encrypted to the sender too, M1)
    seal_key = load_seal(setup.proxy.state_dir, state_key(setup.proxy.state_dir))
    own = smime.open_message(raw, cms.SoftwareDecryptor(seal_key._key, seal), trust(),
                             check_sender=False)
    assert own.attachments[0].data == pdf
    [relayed] = setup.audit("proxy.relayed")
    assert relayed["actor"] == "alice" and relayed["recipients"] == 1
    assert relayed["message_id"] == opened.message_id
    record_text = "".join(r.fields for r in setup.bench.daemon.audit.records())
    assert code not in record_text  # never the code


@pytest.mark.asyncio
async def test_without_a_valid_code_nothing_is_relayed(setup: Setup) -> None:
    op = setup.op
    clear_nurse(op)
    before = all_mail(op)
    other = setup.code("bob")
    mine = setup.code("alice")
    forged = f"{(int(mine) + 1) % 1_000_000:06d}"
    cases = [("missing", "Compte rendu"),
             ("invalid", f"[code:{forged}] Compte rendu"),
             ("invalid", f"[code:{other}] Compte rendu")]  # bob's code is not alice's
    for _reason, subject in cases:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await setup.send("alice", message(ALICE, subject))
        assert refused.value.smtp_code == 550
        assert refused.value.smtp_error.decode() == (
            "5.7.0 emission code missing or invalid: mail is never relayed in clear")
        assert all_mail(op) == before
    reasons = [r["reason"] for r in setup.audit("proxy.refused")]
    assert reasons == [reason for reason, _ in cases]
    # a used code is refused the second time (single use), and audited as a replay
    code = setup.code("alice")
    await setup.send("alice", message(ALICE, f"[code:{code}] one"))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await setup.send("alice", message(ALICE, f"[code:{code}] two"))
    assert refused.value.smtp_code == 550
    assert len(nurse_inbox(op)) == 1
    assert setup.audit("proxy.refused")[-1]["reason"] == "replayed"
    assert setup.audit("proxy.refused")[-1]["actor"] == "alice"
    # an older code of the window is also spent once a newer one was used
    with pytest.raises(smtplib.SMTPDataError):
        earlier = setup.code("alice", time.time() - 30)
        await setup.send("alice", message(ALICE, f"[code:{earlier}] x"))
    assert len(nurse_inbox(op)) == 1
    audit_text = "".join(r.fields for r in setup.bench.daemon.audit.records())
    for used in (mine, forged, other, code, earlier):
        assert used not in audit_text  # outcomes only, never a code


@pytest.mark.asyncio
async def test_login_by_address_and_a_code_anywhere_in_the_subject(setup: Setup) -> None:
    clear_nurse(setup.op)
    msg = message(ALICE, f"Re: [CODE {setup.code('alice')}] Bilan")
    assert await setup.send("alice", msg, login=ALICE) == {}
    [raw] = nurse_inbox(setup.op)
    opened = smime.open_message(raw, nurse(), trust(), check_sender=False)
    assert opened.subject == "Re: Bilan"


@pytest.mark.asyncio
async def test_operator_down_is_a_temporary_failure_and_the_code_is_spent(
        edged: BenchFactory, mail_world: SimulatedWorld, op: MailOperator,
        tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    setup = await start(edged, mail_world, tmp_path, smtp_port=closed)
    clear_nurse(op)
    code = setup.code("alice")
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        await setup.send("alice", message(ALICE, f"[code:{code}] x"))
    assert deferred.value.smtp_code == 451 and b"try again later" in deferred.value.smtp_error
    assert nurse_inbox(op) == []
    assert setup.audit("proxy.refused")[-1]["reason"] == "relay-failed"
    with pytest.raises(smtplib.SMTPDataError) as refused:  # a retry needs a new code
        await setup.send("alice", message(ALICE, f"[code:{code}] x"))
    assert refused.value.smtp_code == 550


@pytest.mark.asyncio
async def test_a_message_id_that_looks_like_a_nir_is_audited_hashed(setup: Setup) -> None:
    msg = message(ALICE, f"[code:{setup.code('alice')}] x")
    msg["Message-ID"] = "<178027505601209@cabinet.test>"
    assert await setup.send("alice", msg) == {}
    [relayed] = setup.audit("proxy.relayed")
    # The audit masks a NIR-shaped value itself (review L3): recorded, never in full.
    assert "178027505601209" not in relayed["message_id"]
    assert relayed["message_id"].endswith("@cabinet.test>")


def test_no_seal_key_stops_the_proxy_before_it_listens(mail_world: SimulatedWorld,
                                                       tmp_path: Path) -> None:
    settings = ProxySettings.from_table(proxy_table(mail_world))
    with pytest.raises(SealError, match="bifente proxy seal import"):
        ProxyServer(settings, tmp_path / "state", ssl.create_default_context(),
                    state_key(tmp_path / "state"))


@pytest.mark.asyncio
async def test_proxy_off_when_disabled(edged: BenchFactory,
                                       mail_world: SimulatedWorld) -> None:
    bench = await edged(proxy=proxy_table(mail_world, enabled=False))
    assert bench.daemon.services.proxy is None
    bench = await edged()
    assert bench.daemon.services.proxy is None


@pytest.mark.asyncio
async def test_lockout_after_repeated_code_failures(setup: Setup) -> None:
    clear_nurse(setup.op)
    for _ in range(3):  # max_failures = 3
        with pytest.raises(smtplib.SMTPDataError):
            await setup.send("bob", message(BOB, "[code:000000] x"))
    with pytest.raises(smtplib.SMTPAuthenticationError):  # locked: even the right password
        await setup.send("bob", message(BOB, f"[code:{setup.code('bob')}] x"))
    assert nurse_inbox(setup.op) == []
    refused = setup.audit("proxy.refused")[-1]
    # Not logged in: the one actor form of every unauthenticated caller (audit_actor).
    assert (refused["reason"], refused["actor"]) == ("locked", "unpaired@127.0.0.1")
    # alice is not affected
    assert await setup.send("alice", message(ALICE, f"[code:{setup.code('alice')}] x")) == {}
    UserStore(setup.proxy.state_dir, state_key(setup.proxy.state_dir)).unlock("bob")
    assert await setup.send("bob", message(BOB, f"[code:{setup.code('bob')}] x")) == {}


@pytest.mark.asyncio
async def test_unknown_recipient_is_refused_before_anything_is_relayed(setup: Setup) -> None:
    clear_nurse(setup.op)
    before = all_mail(setup.op)
    msg = message(ALICE, f"[code:{setup.code('alice')}] x")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await setup.send("alice", msg, rcpts=[NURSE, "nobody@cabinet.test"])
    assert refused.value.smtp_code == 550
    assert b"nobody@cabinet.test" in refused.value.smtp_error
    assert b"no encryption certificate" in refused.value.smtp_error
    assert all_mail(setup.op) == before
    assert setup.audit("proxy.refused")[-1]["reason"] == "unknown-recipient"


@pytest.mark.asyncio
async def test_sender_must_be_the_user_and_tls_and_auth_are_required(setup: Setup) -> None:
    code = setup.code("alice")
    with pytest.raises(smtplib.SMTPSenderRefused):  # envelope sender is bob's
        await setup.send("alice", message(BOB, f"[code:{code}] x"))

    def plain() -> None:
        with smtplib.SMTP("127.0.0.1", setup.proxy.port, timeout=10) as client:
            client.ehlo()
            code, _ = client.mail(ALICE)
            assert code == 530  # STARTTLS first

    await asyncio.to_thread(plain)

    def no_auth() -> None:
        with smtplib.SMTP("127.0.0.1", setup.proxy.port, timeout=10) as client:
            client.starttls(context=setup.tls)
            client.ehlo()
            code, _ = client.mail(ALICE)
            assert code == 530  # AUTH first

    await asyncio.to_thread(no_auth)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        await setup.send("alice", message(ALICE, "x"), password="wrong-password")
    assert setup.audit("proxy.relayed") == []


# -- the seal key at rest -------------------------------------------------------------------
def test_seal_key_is_encrypted_under_the_state_key(op: MailOperator, tmp_path: Path) -> None:
    wrapper = state_key(tmp_path / "state")
    cert, key = op.structure_certificate(DOMAIN)
    path = import_seal(tmp_path / "state", cert, key, wrapper=wrapper)
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in path.parent.iterdir()) == ["seal.crt.pem", "seal.key.pem"]
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)
    signer = load_seal(tmp_path / "state", wrapper)
    assert hashlib.sha256(signer.sign(b"x")).digest()  # usable once decrypted in memory
    # Another state key (a stolen copy of the state directory, a guess) opens nothing.
    with pytest.raises(SealError, match="cannot be decrypted with the state key"):
        load_seal(tmp_path / "state",
                  load_key_wrapper(tmp_path / "state", str(tmp_path / "thief" / "state.key")))
    # a passphrase kept elsewhere (config seal_secret_file)
    elsewhere = tmp_path / "usb" / "seal.pass"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"a passphrase from a removable key\n")
    import_seal(tmp_path / "other", cert, key, secret_file=elsewhere)
    assert load_seal(tmp_path / "other", wrapper, elsewhere).certificate.subject
    with pytest.raises(SealError):
        load_seal(tmp_path / "other", wrapper)


def test_an_older_seal_secret_beside_the_key_is_moved_under_the_state_key(
        op: MailOperator, tmp_path: Path) -> None:
    # How an older install stored it (review M8): a random passphrase in proxy/seal.secret.
    cert, key = op.structure_certificate(DOMAIN)
    folder = tmp_path / "state" / "proxy"
    folder.mkdir(parents=True, mode=0o700)
    legacy = folder / "seal.secret"
    legacy.write_bytes(b"an old random passphrase of 32 b\n")
    import_seal(tmp_path / "state", cert, key, secret_file=legacy)
    wrapper = state_key(tmp_path / "state")
    first = load_seal(tmp_path / "state", wrapper)  # opens with the old secret, re-encrypts
    assert not legacy.exists()
    again = load_seal(tmp_path / "state", wrapper)  # now under the state key alone
    assert again.certificate == first.certificate
    pem = (folder / "seal.key.pem").read_bytes()
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(pem, password=b"an old random passphrase of 32 b")


def test_config_errors_name_the_setting(mail_world: SimulatedWorld) -> None:
    good = proxy_table(mail_world)
    assert ProxySettings.from_table(good).relay_account == "structure@cabinet.test"
    for change, words in [({"colour": "red"}, "unknown setting proxy.colour"),
                          ({"port": "587"}, "proxy.port must be an integer"),
                          ({"directory_url": "http://x"}, "https://"),
                          ({"mode": "ecb"}, "proxy.mode"),
                          ({"max_failures": 0}, "proxy.max_failures"),
                          ({"enabled": "no"}, "proxy.enabled must be true or false")]:
        with pytest.raises(ProxyConfigError, match=words):
            ProxySettings.from_table(good | change)
    missing = dict(good)
    del missing["domain"]
    with pytest.raises(ProxyConfigError, match=r"proxy\.domain is required"):
        ProxySettings.from_table(missing)


def test_cli_user_add_prints_the_otpauth_uri_once(tmp_path: Path) -> None:
    env = os.environ | {"BIFENTE_STATE_DIR": str(tmp_path / "state"),
                        "BIFENTE_STATE_KEY_FILE": str(tmp_path / "key" / "state.key")}
    run = subprocess.run([sys.executable, "-m", "bifente.edged.cli.main", "proxy", "user", "add",
                          "carol", "--email", "carol@cabinet.test"],
                         capture_output=True, text=True, env=env, timeout=60, check=True)
    assert "otpauth://totp/bifente%20proxy%3Acarol?secret=" in run.stdout
    assert "digits=6" in run.stdout and "period=30" in run.stdout
    listing = subprocess.run([sys.executable, "-m", "bifente.edged.cli.main",
                              "proxy", "user", "list"],
                             capture_output=True, text=True, env=env, timeout=60, check=True)
    assert "carol" in listing.stdout and "otpauth" not in listing.stdout
    assert oct((tmp_path / "state" / "proxy" / "users.db").stat().st_mode & 0o777) == "0o600"
    again = subprocess.run([sys.executable, "-m", "bifente.edged.cli.main", "proxy", "user", "add",
                            "carol", "--email", "carol@cabinet.test"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode != 0 and "exists already" in again.stderr


@pytest.mark.asyncio
async def test_a_listener_that_fails_to_close_is_logged(
        setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    real = setup.proxy._server
    assert real is not None

    class FailingClose:
        """The listening server, whose close fails the way a broken socket's does."""

        def close(self) -> None:
            real.close()

        async def wait_closed(self) -> None:
            await real.wait_closed()
            raise OSError("the listening socket is gone")

    setup.proxy._server = FailingClose()  # type: ignore[assignment]
    caplog.set_level(logging.WARNING, logger="bifente.edged.services.proxy.server")
    await setup.proxy.stop()
    assert "the listening socket is gone" in caplog.text
    assert setup.proxy._server is None  # stopped all the same
