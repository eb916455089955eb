"""Tools we did not write recognise and read the simulated CPS: OpenSC's IAS-ECC CPx driver."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

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

    from simulators.pki import card_keys

    # Certificate and key ids are the AID then 01 / 02, as on a real CPS3 (OpenSC #2267).
    result = run("pkcs15-tool", "-r", "0", "--read-certificate",
                 "e828bd080f8025000001ff001001")
    assert result.returncode == 0, result.stderr
    cert = x509.load_pem_x509_certificate(result.stdout.encode())
    assert cert == card_keys(card.profile.name).signature_cert
