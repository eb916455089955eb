"""Every fuzz finding (docs/reliability.md) as a regression test, with its minimal input."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from bifente.apdu.errors import MalformedData
from bifente.apdu.pkcs15 import decode_cdf, decode_token_info
from bifente.edged.api.jsonrpc import PARSE_ERROR, RpcError, parse_message
from bifente.edged.config import ConfigError, load_config
from bifente.edged.services import cms, smime
from bifente.simulators.dmp.cda import CdaProblem, check_cda
from bifente.simulators.pki import ca_certificate, card_keys
from bifente.simulators.profiles import ProfileError, load_cps, load_vitale

TRUST = cms.TrustStore([ca_certificate("root")])


def _open_clear(raw: bytes) -> smime.OpenedMessage:
    return smime.open_message(raw, None, TRUST, require_encrypted=False, require_signed=False)


# -- D5: PKCS#15 ---------------------------------------------------------------------------
@pytest.mark.parametrize("data", [bytes.fromhex("30050201000300")])
def test_pkcs15_empty_bit_string_flags_is_malformed_data(data: bytes) -> None:
    with pytest.raises(MalformedData):
        decode_token_info(data)


def test_pkcs15_cdf_empty_common_object_flags_is_malformed_data() -> None:
    # CertificateObject: CommonObjectAttributes { flags BIT STRING of length 0 } ...
    data = bytes.fromhex("30 0C 30 02 03 00 30 00 A1 04 30 02 04 00".replace(" ", ""))
    with pytest.raises(MalformedData):
        decode_cdf(data)


# -- D3 (host side): CDA -------------------------------------------------------------------
@pytest.mark.parametrize("decl", [b'<?xml version="1.0" encoding="U"?><a/>',
                                  b'<?xml version="1.0" encoding="UTF-7"?><a/>'])
def test_cda_unknown_encoding_is_refused_with_its_reason(decl: bytes) -> None:
    result = check_cda(decl, "279035121518989", {"11488-4"})
    assert not result.ok
    assert [p for p, _ in result.problems] == [CdaProblem.XML_MALFORMED]


# -- D6: JSON-RPC nesting ------------------------------------------------------------------
@pytest.mark.parametrize("text", [b"[" * 5000, b'{"a":' * 3000])
def test_deep_nesting_is_a_parse_error(text: bytes) -> None:
    with pytest.raises(RpcError) as caught:
        parse_message(text)
    assert caught.value.code == PARSE_ERROR


# -- D4: cms.verify ------------------------------------------------------------------------
def test_carried_certificate_with_a_bad_version_is_signature_invalid() -> None:
    keys = card_keys("gp")
    signer = cms.SoftwareSigner(keys.signature_key, keys.signature_cert,
                                [ca_certificate("personnes")])
    der = cms.sign(b"content", signer, detached=False)
    version = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT Version v3 (RFC 5280 §4.1)
    assert version in der
    with pytest.raises(cms.SignatureInvalid) as caught:
        cms.verify(der.replace(version, b"\xa0\x03\x02\x01\x42", 1), trust=TRUST)
    assert caught.value.reason == cms.Reason.MALFORMED


# -- D4: S/MIME open path ------------------------------------------------------------------
HOSTILE = {
    "8-bit boundary": (b'From: a@b.test\r\nContent-Type: multipart/signed; '
                       b'protocol="application/pkcs7-signature"; boundary="\xe9"\r\n\r\n'
                       b"--\xe9\r\n\r\nx\r\n--\xe9--\r\n"),
    "unknown charset": (b"From: a@b.test\r\nContent-Type: text/plain; charset=x-nope\r\n\r\nx"),
    "NUL charset": (b"From: a@b.test\r\nContent-Type: text/plain; charset=\"a\x00\"\r\n\r\nx"),
    "NUL in a file name": (b'From: a@b.test\r\nContent-Type: multipart/mixed; boundary="B"'
                           b"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B\r\n"
                           b"Content-Type: application/pdf\r\nContent-Disposition: attachment;"
                           b' filename="a\x00b"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
                           b"QQ==\r\n--B--\r\n"),
    "group as From": b"From: x:;y@z.test\r\nContent-Type: text/plain\r\n\r\nx",
    # The smime long run (44 bytes): a year past datetime's range, OverflowError.
    "year out of range": b"From: cl\x01\x00\r\nDate:4411518833 Jun 2 00:00:1 +8",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_messages_open_or_raise_malformed_message(raw: bytes) -> None:
    with contextlib.suppress(smime.MalformedMessage):
        _open_clear(raw)


def test_encrypted_layer_without_decryptor_is_a_typed_error() -> None:
    keys = card_keys("gp")
    der = cms.encrypt(b"x", [keys.authentication_cert])
    raw = (b"From: a@b.test\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data"
           b"\r\nContent-Transfer-Encoding: binary\r\n\r\n" + der)
    with pytest.raises(smime.DecryptorNeeded):
        _open_clear(raw)


@pytest.mark.timeout(30)
def test_long_parameter_name_in_an_attached_entity_does_not_hang() -> None:
    # CPython 3.11's _fold_mime_parameters loops forever refolding a parameter name longer
    # than a line; the attached entity is now written back as received.
    raw = (b'From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"'
           b"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B\r\n"
           b'Content-Type: multipart/alternative; boundary="C"\r\n'
           b"Content-Disposition: attachment\r\n\r\n--C\r\nContent-Type: text/plain; "
           + b"n" * 80 + b'="a"\r\n\r\nx\r\n--C--\r\n--B--\r\n')
    opened = _open_clear(raw)
    assert len(opened.attachments) == 1
    assert b"n" * 80 + b'="a"' in opened.attachments[0].data


# -- TOML loaders --------------------------------------------------------------------------
def test_config_not_utf8_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    path.write_bytes(b'[log]\nlog_level = "\xff"\n')
    with pytest.raises(ConfigError, match=r"edged\.toml"):
        load_config(path)


@pytest.mark.parametrize("loader", [load_cps, load_vitale])
@pytest.mark.parametrize("body", [b"[card]\nserial = \"\xff\"\n", b"card = 1\nholder = 2\n",
                                  b"card = 1\ninsured = 2\nbeneficiary = [1]\n",
                                  b"[card]\nserial = 1\n[holder]\n[insured]\n"])
def test_profile_of_wrong_types_is_profile_error(loader, body: bytes, tmp_path: Path) -> None:
    path = tmp_path / "fuzzed.toml"
    path.write_bytes(body)
    with pytest.raises(ProfileError, match="fuzzed"):
        loader(str(path))


# Found by the long run (docs/reliability.md): tomllib recurses once per nesting level.
NESTED_TOML = b"r=" + b"[{r=" * 400 + b"1" + b"}]" * 400 + b"\n"


def test_config_nested_too_deep_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    path.write_bytes(NESTED_TOML)
    with pytest.raises(ConfigError, match="nested too deep"):
        load_config(path)


@pytest.mark.parametrize("loader", [load_cps, load_vitale])
def test_profile_nested_too_deep_is_profile_error(loader, tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_bytes(NESTED_TOML)
    with pytest.raises(ProfileError, match="nested too deep"):
        loader(str(path))
