"""The simulated CPS signs, decrypts and manages its PIN through tools we did not write.

OpenSC's PKCS#11 module and pkcs15-tool, GnuTLS's p11tool and the OpenSSL pkcs11 engine
(libp11), each run unchanged through pcscd + vpcd, as they would run against a real CPS3.
What OpenSC does with the card, operation by operation, is in docs/cards.md.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bifente.apdu import tlv
from bifente.apdu.cps_spec import CPS_AID
from bifente.apdu.sha256 import split
from bifente.simulators.cps3 import Cps3Card
from tests.needs import missing

pytestmark = [pytest.mark.pcsc, pytest.mark.interop]

PIN, PUK = "1234", "12345678"
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
AUT, SIG = "CPS_PRIV_AUT", "CPS_PRIV_SIG"
AUT_CERT = "Certificat d'Authentification CPS"


def _installed(what: str, found: str | None) -> str:
    """The path of a tool `make setup` installs: skip without it, fail under CI."""
    if found is None:
        missing(f"{what} is not installed (make setup installs it)")
    return found


def _library(pattern: str) -> str | None:
    # The multiarch directory differs between machines: look, never hard-code it.
    found = sorted(glob.glob(f"/usr/lib/*/{pattern}") + glob.glob(f"/usr/lib/{pattern}"))
    return found[0] if found else None


@pytest.fixture(scope="module")
def module() -> str:
    """OpenSC's PKCS#11 module."""
    _installed("OpenSC", shutil.which("pkcs11-tool"))
    return _installed("opensc-pkcs11.so", _library("opensc-pkcs11.so"))


def run(*cmd: str, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool; with check, a non-zero exit fails the test with its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False,
                            env=dict(os.environ, **(env or {})))
    if check:
        assert result.returncode == 0, (cmd, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.fixture
def card(cps) -> Iterator[Cps3Card]:
    """The gp card in slot 0, with no connection of ours open (the tools get it alone)."""
    simulated, protocol = cps("gp")
    protocol.close()
    yield simulated


def key_id(module: str, label: str) -> str:
    """The PKCS#11 id of a key, found by its label (pkcs11-tool --sign selects by --id)."""
    listing = run("pkcs11-tool", "--module", module, "--login", "--pin", PIN,
                  "--list-objects", "--type", "privkey").stdout
    found = re.search(rf"label:\s+{label}\n(?:.*\n)*?\s+ID:\s+([0-9a-f]+)", listing)
    assert found, listing
    return found.group(1)


def read_certificate(module: str, label: str, tmp_path: Path) -> x509.Certificate:
    """The certificate as pkcs11-tool --read-object gives it."""
    out = tmp_path / "cert.der"
    run("pkcs11-tool", "--module", module, "--read-object", "--type", "cert",
        "--label", label, "-o", str(out))
    return x509.load_der_x509_certificate(out.read_bytes())


def public_pem(cert: x509.Certificate, tmp_path: Path) -> Path:
    """The certificate's public key in a PEM file, for openssl dgst -verify."""
    path = tmp_path / "public.pem"
    path.write_bytes(cert.public_key().public_bytes(Encoding.PEM,
                                                    PublicFormat.SubjectPublicKeyInfo))
    return path


def test_pkcs11_tool_signs_with_the_authentication_key(card, module, tmp_path) -> None:
    message = tmp_path / "message"
    message.write_bytes(b"ordonnance du 12 mars: amoxicilline 1 g x 3 / jour")
    digest_info = tmp_path / "digest_info"
    digest_info.write_bytes(SHA256_DIGEST_INFO + hashlib.sha256(message.read_bytes()).digest())
    aut = key_id(module, AUT)
    assert aut == (CPS_AID + b"\x02").hex()  # AID || 02, as on a real CPS3
    signature = tmp_path / "signature"
    run("pkcs11-tool", "--module", module, "--login", "--pin", PIN, "--sign", "--id", aut,
        "-m", "RSA-PKCS", "-i", str(digest_info), "-o", str(signature))
    cert = read_certificate(module, AUT_CERT, tmp_path)
    verified = run("openssl", "dgst", "-sha256", "-verify", str(public_pem(cert, tmp_path)),
                   "-signature", str(signature), str(message))
    assert verified.stdout.strip() == "Verified OK"


def test_pkcs11_tool_decrypts_what_openssl_encrypted(card, module, tmp_path) -> None:
    cert = read_certificate(module, AUT_CERT, tmp_path)
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    secret = os.urandom(32)
    (tmp_path / "secret").write_bytes(secret)
    run("openssl", "pkeyutl", "-encrypt", "-certin", "-inkey", str(tmp_path / "cert.pem"),
        "-in", str(tmp_path / "secret"), "-out", str(tmp_path / "cryptogram"))
    run("pkcs11-tool", "--module", module, "--login", "--pin", PIN, "--decrypt",
        "--id", key_id(module, AUT), "-m", "RSA-PKCS", "-i", str(tmp_path / "cryptogram"),
        "-o", str(tmp_path / "clear"))
    assert (tmp_path / "clear").read_bytes() == secret


def test_signature_key_meets_opensc_s_openssl_3_limit(card, module, tmp_path) -> None:
    # OpenSC 0.23 built on OpenSSL 3 compiles its host half of the split hash out
    # (card-iasecc.c iasecc_qsign_data_sha256, commit ca1bf057f): a real CPS3 fails the same.
    # The card got OpenSC's MSE SET HT and DST and accepted both before that.
    (tmp_path / "message").write_bytes(b"compte rendu")
    result = run("pkcs11-tool", "--module", module, "--login", "--pin", PIN, "--sign",
                 "--id", key_id(module, SIG), "-m", "SHA256-RSA-PKCS",
                 "-i", str(tmp_path / "message"), "-o", str(tmp_path / "signature"),
                 env={"OPENSC_DEBUG": "9"}, check=False)
    assert result.returncode != 0
    assert "CKR_FUNCTION_NOT_SUPPORTED" in result.stderr
    log = result.stderr + result.stdout
    assert "iasecc_qsign_data_sha256: returning with: -1408 (Not supported)" in log
    assert "Cannot get QSign data: -1408 (Not supported)" in log
    mse = log[log.rindex("00 22 41 AA 03 80 01 40"):]
    assert "00 22 41 B6 06 84 01 81 80 01 42" in mse
    assert not re.search(r"Incoming APDU.*\n6A ", mse)  # no refusal from the card


def split_hash_apdus(message: bytes) -> list[str]:
    """PSO HASH and PSO CDS exactly as iasecc_compute_signature_dst builds them."""
    state, bits, rest = split(message)  # OpenSSL's cut: every whole block hashed
    field = tlv.encode(0x90, state + bits.to_bytes(8, "big") if bits else b"")
    field += tlv.encode(0x80, rest)
    return ["00 2A 90 A0 " + bytes([len(field)]).hex() + field.hex(), "00 2A 9E 9A 00"]


@pytest.mark.parametrize("size", [25, 64, 100])
def test_split_hash_replayed_with_opensc_tool_verifies(card, tmp_path, size: int) -> None:
    # OpenSC's APDUs for CPS_PRIV_SIG, replayed with opensc-tool -s: select, VERIFY, MSE HT,
    # MSE DST, PSO HASH (25 bytes: the empty-state form 90 00), PSO CDS. The card side of
    # the signature OpenSC cannot compute under OpenSSL 3.
    message = bytes((i * 7 + size) & 0xFF for i in range(size))
    apdus = ["00 A4 04 0C 0D " + CPS_AID.hex(), "00 20 00 01 04 " + PIN.encode().hex(),
             "00 22 41 AA 03 80 01 40", "00 22 41 B6 06 84 01 81 80 01 42",
             *split_hash_apdus(message)]
    args = [arg for apdu in apdus for arg in ("-s", apdu)]
    result = run("opensc-tool", "-r", "0", *args)
    answers = result.stdout.split("Received (SW1=")[1:]
    assert len(answers) == len(apdus) and all(a.startswith("0x90, SW2=0x00)") for a in answers)
    hex_dump = re.findall(r"^((?:[0-9A-F]{2} )+)", answers[-1], re.MULTILINE)
    signature = bytes.fromhex("".join(hex_dump).replace(" ", ""))
    assert len(signature) == 256
    (tmp_path / "message").write_bytes(message)
    (tmp_path / "signature").write_bytes(signature)
    pem = run("pkcs15-tool", "-r", "0", "--read-certificate",
              (CPS_AID + b"\x01").hex()).stdout.encode()
    public = public_pem(x509.load_pem_x509_certificate(pem), tmp_path)
    verified = run("openssl", "dgst", "-sha256", "-verify", str(public), "-signature",
                   str(tmp_path / "signature"), str(tmp_path / "message"))
    assert verified.stdout.strip() == "Verified OK"


def test_pkcs15_tool_changes_the_pin(card) -> None:
    run("pkcs15-tool", "-r", "0", "--change-pin", "--auth-id", "01", "--pin", PIN,
        "--new-pin", "8642")
    assert card.pins[0x01].value == b"8642"
    wrong = run("pkcs15-tool", "-r", "0", "--verify-pin", "--auth-id", "01", "--pin", PIN,
                check=False)
    assert "PIN code or key incorrect" in wrong.stderr
    run("pkcs15-tool", "-r", "0", "--verify-pin", "--auth-id", "01", "--pin", "8642")


def test_pkcs15_tool_unblocks_the_pin_with_the_puk(card) -> None:
    for message in ("PIN code or key incorrect", "PIN code or key incorrect",
                    "Authentication method blocked"):
        wrong = run("pkcs15-tool", "-r", "0", "--verify-pin", "--auth-id", "01",
                    "--pin", "9999", check=False)
        assert message in wrong.stderr
    assert card.pins[0x01].blocked
    run("pkcs15-tool", "-r", "0", "--unblock-pin", "--auth-id", "01", "--puk", PUK,
        "--new-pin", "4321")
    assert card.pins[0x01].tries_left == 3 and card.pins[0x01].value == b"4321"
    run("pkcs15-tool", "-r", "0", "--verify-pin", "--auth-id", "01", "--pin", "4321")


def test_pkcs11_tool_test_has_only_the_error_a_real_cps3_has(card, module) -> None:
    result = run("pkcs11-tool", "--module", module, "--test", "--login", "--pin", PIN,
                 check=False)
    out = result.stdout
    assert "C_GenerateRandom" in out and "seems to be OK" in out  # GET CHALLENGE
    assert "RSA-PKCS: OK" in out
    assert out.count("RSA-PKCS: OK") == 2  # AUT: sign/verify, then decrypt
    errors = [line.strip() for line in out.splitlines() if "ERR" in line]
    # The signature key's hash-on-card signature: OpenSC 0.23 on OpenSSL 3 (see above).
    assert errors == ["SHA1-RSA-PKCS:   ERR: C_Sign() returned CKR_FUNCTION_NOT_SUPPORTED "
                      "(0x54)"], out
    assert out.rstrip().endswith("1 errors")


def test_p11tool_test_sign_with_the_authentication_key(card, module) -> None:
    p11tool = _installed("p11tool (gnutls-bin)", shutil.which("p11tool"))
    result = run(p11tool, "--provider", module, "--login", "--test-sign",
                 f"pkcs11:object={AUT};type=private", env={"GNUTLS_PIN": PIN})
    said = result.stdout + result.stderr  # p11tool reports on stderr
    assert "Signing using RSA-SHA256... ok" in said
    assert "Verifying against private key parameters... ok" in said


def test_openssl_pkcs11_engine_signs_with_the_authentication_key(card, module,
                                                                 tmp_path) -> None:
    engine = _installed("libengine-pkcs11-openssl", _library("engines-3/pkcs11.so"))
    config = tmp_path / "openssl.cnf"
    config.write_text("\n".join([
        "openssl_conf = init", "[init]", "engines = engines", "[engines]",
        "pkcs11 = pkcs11", "[pkcs11]", "engine_id = pkcs11", f"dynamic_path = {engine}",
        f"MODULE_PATH = {module}", "init = 0", ""]))
    message = tmp_path / "message"
    message.write_bytes(b"lettre de liaison")
    signature = tmp_path / "signature"
    run("openssl", "dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine", "-sign",
        f"pkcs11:object={AUT};type=private;pin-value={PIN}", "-out", str(signature),
        str(message), env={"OPENSSL_CONF": str(config)})
    cert = read_certificate(module, AUT_CERT, tmp_path)
    verified = run("openssl", "dgst", "-sha256", "-verify", str(public_pem(cert, tmp_path)),
                   "-signature", str(signature), str(message))
    assert verified.stdout.strip() == "Verified OK"


def test_oaep_decipher_is_refused_as_on_a_real_cps3(card, module, tmp_path) -> None:
    # A real CPS3 deciphers PKCS#1 v1.5 only (TokenInfo algRef 1A, OpenSC #2267); OpenSC
    # must not get a plaintext for an OAEP cryptogram out of the card by any route.
    cert = read_certificate(module, AUT_CERT, tmp_path)
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp_path / "secret").write_bytes(os.urandom(32))
    run("openssl", "pkeyutl", "-encrypt", "-certin", "-inkey", str(tmp_path / "cert.pem"),
        "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
        "-pkeyopt", "rsa_mgf1_md:sha256",
        "-in", str(tmp_path / "secret"), "-out", str(tmp_path / "cryptogram"))
    result = run("pkcs11-tool", "--module", module, "--login", "--pin", PIN, "--decrypt",
                 "--id", key_id(module, AUT), "-m", "RSA-PKCS-OAEP", "--hash-algorithm",
                 "SHA256", "--mgf", "MGF1-SHA256", "-i", str(tmp_path / "cryptogram"),
                 "-o", str(tmp_path / "clear"), env={"OPENSC_DEBUG": "9"}, check=False)
    assert result.returncode != 0
    assert "C_DecryptInit failed: rv = CKR_MECHANISM_INVALID" in result.stderr
    log = result.stderr + result.stdout
    assert "00 22 41 B8" not in log and "00 2A 80 86" not in log  # nothing asked of the card
    assert not (tmp_path / "clear").exists() or not (tmp_path / "clear").read_bytes()
