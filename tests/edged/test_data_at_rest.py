"""Review M8 against the real daemon: what a copy of the state directory (the SD card's
/var/lib/bifente) gives away. The keys are encrypted with a state key kept elsewhere, queued
health documents are sealed, and every file is 0600 in 0700 directories."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.edged.state.keystore import Keystore, KeystoreError
from bifente.edged.state.keywrap import CREDENTIAL_NAME, StateKeyError, load_key_wrapper
from bifente.simulators.world import SimulatedWorld

PIERRE = "178027505601209"
CDA = b"<?xml version='1.0'?><ClinicalDocument>compte rendu: diabete de type 2</ClinicalDocument>"


@pytest.mark.asyncio
async def test_a_copied_state_directory_cannot_forge_consents_or_read_documents(
        tmp_path: Path, dmp_sim: SimulatedWorld, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "elsewhere" / "state.key"
    config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state", mdns=False,
                    pcsc=False, state_key_file=str(key_file),
                    dmp=dmp_sim.edged_overrides()["dmp"])
    caplog.set_level(logging.WARNING)
    daemon = Daemon(config)
    try:
        await daemon.start()
        service = daemon.services.dmp
        await service.ensure_enrolled()  # the host now trusts this terminal's consent key
        consent = service.signer.sign(ins=PIERRE, professional="810001000101", action="feed")
        header = "consent-header-" + consent["signature"]
        queue_id = service.queue.add(PIERRE, "810001000101", "", CDA, header)
        queued = service.queue.get(queue_id)
        assert queued is not None and queued.cda == CDA  # the daemon itself reads it back
    finally:
        await daemon.stop()
    assert "FALLBACK key file" in caplog.text  # the fallback is said, every start

    # The review's reproduction: take the state directory off the SD card.
    stolen = tmp_path / "stolen"
    shutil.copytree(tmp_path / "state", stolen)
    pem = (stolen / "keys" / "consent-signing.key.pem").read_bytes()
    with pytest.raises(TypeError, match="encrypted"):
        serialization.load_pem_private_key(pem, password=None)
    for path in stolen.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"BEGIN PRIVATE KEY" not in data and b"BEGIN EC PRIVATE KEY" not in data
            assert CDA not in data and b"diabete" not in data
            assert header.encode() not in data
    # Another state key (another machine, a guess) opens nothing.
    other = load_key_wrapper(stolen, str(tmp_path / "attacker" / "state.key"))
    with pytest.raises(KeystoreError):
        _ = Keystore(stolen / "keys", hostname="desk", wrapper=other).fingerprint

    # Modes: 0700 directories, 0600 files, the state key outside the state directory.
    for path in [tmp_path / "state", *(tmp_path / "state").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (tmp_path / "state").joinpath(key_file.name).exists()


@pytest.mark.asyncio
async def test_state_key_from_the_systemd_credential(tmp_path: Path, monkeypatch,
                                                        caplog) -> None:
    # What edged.service's LoadCredentialEncrypted= gives the process: a file in
    # $CREDENTIALS_DIRECTORY that systemd decrypted (TPM2 or host key) for this service only.
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / CREDENTIAL_NAME).write_bytes(os.urandom(32))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    caplog.set_level(logging.INFO)
    wrapper = load_key_wrapper(tmp_path / "state")
    assert wrapper.hardware_bound and "FALLBACK" not in caplog.text
    sealed = wrapper.seal("dmp-queue/cda", CDA, b"id-1")
    assert wrapper.open("dmp-queue/cda", sealed, b"id-1") == CDA
    with pytest.raises(StateKeyError):  # a blob moved to another row does not open
        wrapper.open("dmp-queue/cda", sealed, b"id-2")


@pytest.mark.asyncio
async def test_a_key_file_inside_the_state_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StateKeyError, match="inside the state directory"):
        load_key_wrapper(tmp_path / "state", str(tmp_path / "state" / "keys" / "state.key"))


def _seal_files(folder: Path) -> tuple[Path, Path]:
    """A structure's seal certificate and its key in clear, as `bifente proxy seal import`
    is given them (self-signed: the store does not validate the chain)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cabinet cachet")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    folder.mkdir()
    (folder / "seal.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "seal.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder / "seal.crt", folder / "seal.key"


def test_a_copied_state_directory_cannot_make_emission_codes_or_open_the_seal(
        tmp_path: Path) -> None:
    # The proxy's secrets: the TOTP secrets codes are made from, and the seal key's passphrase
    # (once `proxy/seal.secret`, beside the key). Stored as edged and `bifente proxy` do.
    from bifente.edged.services.proxy import SealError, UserStore, import_seal, load_seal, totp

    state = tmp_path / "state"
    wrapper = load_key_wrapper(state, str(tmp_path / "elsewhere" / "state.key"))
    cert, key = _seal_files(tmp_path / "import")
    import_seal(state, cert, key, wrapper=wrapper)
    store = UserStore(state, wrapper)
    _, secret = store.add("alice", "accueil@cabinet.test")
    store.close()

    stolen = tmp_path / "stolen"
    shutil.copytree(state, stolen)
    files = {p.relative_to(stolen).as_posix(): p.read_bytes()
             for p in stolen.rglob("*") if p.is_file()}
    assert "proxy/seal.secret" not in files  # no passphrase beside the key any more
    for name, data in files.items():
        assert secret not in data, name  # the TOTP secret, raw
        assert b"BEGIN PRIVATE KEY" not in data and b"BEGIN RSA PRIVATE KEY" not in data, name
    # Everything a thief can try with another state key opens nothing.
    thief = load_key_wrapper(stolen, str(tmp_path / "thief" / "state.key"))
    with pytest.raises(SealError):
        load_seal(stolen, thief)
    with pytest.raises(StateKeyError):
        UserStore(stolen, thief).totp_state("alice")
    # The daemon's own key still makes the codes the user's phone makes.
    opened = UserStore(state, wrapper).totp_state("alice")
    assert opened is not None and totp(opened[0], 59) == totp(secret, 59)


def test_totp_secrets_of_an_older_install_are_sealed_when_opened(tmp_path: Path) -> None:
    import sqlite3

    from bifente.edged.state.proxy_users import UserStore

    state = tmp_path / "state"
    wrapper = load_key_wrapper(state, str(tmp_path / "elsewhere" / "state.key"))
    UserStore(state, wrapper).close()  # the schema
    clear = os.urandom(20)
    with sqlite3.connect(state / "proxy" / "users.db") as db:  # a row as older edged wrote it
        db.execute("INSERT INTO users (name, email, password_hash, salt, totp_secret, created)"
                   " VALUES ('bob', 'bob@cabinet.test', x'00', x'00', ?, 0)", (clear,))
    store = UserStore(state, wrapper)
    assert store.totp_state("bob") == (clear, 0)
    store.close()
    for path in (state / "proxy").iterdir():
        assert clear not in path.read_bytes(), path
