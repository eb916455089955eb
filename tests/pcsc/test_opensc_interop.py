"""Tools we did not write recognise and read the simulated CPS: OpenSC's IAS-ECC CPx driver."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from bifente.apdu.cps_spec import CPS_AID_CONTACTLESS

pytestmark = [pytest.mark.pcsc, pytest.mark.interop]

needs_opensc = pytest.mark.skipif(shutil.which("opensc-tool") is None,
                                  reason="OpenSC is not installed (make setup installs it)")


def run(*cmd: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OPENSC_DEBUG="9") if debug else None
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)


@needs_opensc
def test_opensc_names_the_card_ias_ecc_cpx(cps) -> None:
    cps("gp")
    result = run("opensc-tool", "-r", "0", "-n", debug=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "IAS-ECC"
    # The driver name is printed; the card type shows in the driver's own log.
    assert "'IAS/ECC CPx' card matched" in result.stderr
    assert "iasecc_init_cpx: returning with: 0 (Success)" in result.stderr


@needs_opensc
def test_opensc_selects_the_ias_application(cps) -> None:
    # A real CPx refuses SELECT with P2 = 00 (FCI) with 6A86 and answers P2 = 04 (FCP);
    # OpenSC retries that way (commits 1a3666364, 20f359ea0, with real-card logs).
    cps("gp")
    aid = "0D:E8:28:BD:08:0F:80:25:00:00:01:FF:00:10:00"
    result = run("opensc-tool", "-r", "0", "-s", "00:A4:04:00:" + aid,
                 "-s", "00:A4:04:04:" + aid)
    assert result.returncode == 0, result.stderr
    fci, fcp = result.stdout.split("Received (SW1=")[1:]
    assert fci.startswith("0x6A, SW2=0x86)")
    assert fcp.startswith("0x90, SW2=0x00)")
    assert "E8 28 BD 08 0F" in fcp  # the FCP names the AID back


@needs_opensc
def test_opensc_unknown_application_is_6a82(cps) -> None:
    cps("gp")
    result = run("opensc-tool", "-r", "0", "-s", "00:A4:04:0C:05:A0:00:00:00:03")
    assert "SW1=0x6A, SW2=0x82" in result.stdout


@needs_opensc
def test_pkcs15_tool_lists_pins_keys_and_certificates(cps) -> None:
    cps("gp")
    result = run("pkcs15-tool", "-r", "0", "--dump")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in ("PIN [PIN CPS]", "PIN [PUK CPS]", "Private RSA Key [CPS_PRIV_SIG]",
                   "Private RSA Key [CPS_PRIV_AUT]", "Key ref        : 129 (0x81)",
                   "Key ref        : 130 (0x82)", "X.509 Certificate [Certificat de Signature CPS]",
                   "X.509 Certificate [Certificat d'Authentification CPS]",
                   "Data object 'CPS_NAME_PS'"):
        assert needle in out, needle


@needs_opensc
def test_pkcs15_tool_reads_the_same_certificate(cps, tmp_path) -> None:
    card, _protocol = cps("gp")
    from cryptography import x509

    from bifente.simulators.pki import card_keys

    # Certificate and key ids are the AID then 01 / 02, as on a real CPS3 (OpenSC #2267).
    result = run("pkcs15-tool", "-r", "0", "--read-certificate",
                 "e828bd080f8025000001ff001001")
    assert result.returncode == 0, result.stderr
    cert = x509.load_pem_x509_certificate(result.stdout.encode())
    assert cert == card_keys(card.profile.name).signature_cert


def dumped_bytes(text: str) -> bytes:
    """The bytes of opensc-tool's hex dump (16 per line, then their ASCII, which is left out)."""
    found = [re.match(r"((?:[0-9A-F]{2} ){1,16})", line) for line in text.splitlines()]
    return b"".join(bytes.fromhex(m.group(1)) for m in found if m)


# What iasecc-tool --list-applications prints for a real CPx (OpenSC PR #2217).
REAL_CPX_APPLICATIONS = """Application 'CPX IAS':
\tAID: E828BD080F8025000001FF0010
\tDDO: 4F0DE828BD080F8025000001FF0010

Application 'CPX IAS CL':
\tAID: E828BD080F8025000001FF0020
\tDDO: 4F0DE828BD080F8025000001FF0010
"""


@needs_opensc
def test_opensc_lists_both_applications_of_ef_dir_as_on_a_real_cpx(cps) -> None:
    cps("gp")
    for tool in (("pkcs15-tool", "-r", "0"), ("iasecc-tool", "--reader", "0")):
        result = run(*tool, "--list-applications")
        assert result.returncode == 0, result.stderr
        assert REAL_CPX_APPLICATIONS in result.stdout, result.stdout
    # dir.c puts the contact application first, so OpenSC binds it by default; the
    # PKCS#11 module also tries the contactless one, finds no ODF there and skips it.
    result = run("pkcs15-tool", "-r", "0", "--list-info", debug=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bind to application('CPX IAS',aid:'E828BD080F8025000001FF0010')" in result.stderr
    result = run("pkcs11-tool", "-L", debug=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EF(ODF) not found in '3f0000025031'" in result.stderr
    assert "bind CPX IAS CL token error" in result.stderr
    assert result.stdout.count("token label") == 1


@needs_opensc
def test_contactless_application_answers_se_get_data_as_a_real_cpx(cps) -> None:
    # The sequence of OpenSC commit fcd2e665f on a real CPx: inside 0002, SE GET DATA is
    # 6A88; after selecting 3F00, 9000.
    cps("gp")
    se_5 = "00:CB:3F:FF:0A:4D:08:70:06:BF:FB:05:02:7B:80"
    result = run("opensc-tool", "-r", "0", "-s", "00:A4:09:04:04:3F:00:00:02:00", "-s", se_5,
                 "-s", "00:A4:09:04:02:3F:00", "-s", se_5)
    assert result.returncode == 0, result.stderr
    select_cl, se_inside, select_mf, se_from_mf = result.stdout.split("Received (SW1=")[1:]
    assert select_cl.startswith("0x90, SW2=0x00)")
    assert CPS_AID_CONTACTLESS in dumped_bytes(select_cl)  # the FCP names 0002's AID
    assert se_inside.startswith("0x6A, SW2=0x88)")
    assert select_mf.startswith("0x90, SW2=0x00)")
    assert se_from_mf.startswith("0x90, SW2=0x00)")
