"""The simulated card OS, in process: raw APDUs to Cps3Card / Vitale2Card, and via CardProtocol.

Status words are what a host (OpenSC, our sessions) relies on, so each refusal is pinned here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from bifente.apdu import tlv
from bifente.apdu.command import CommandApdu
from bifente.apdu.cps_spec import CPS_AID, CPS_AID_CONTACTLESS, KeyRef
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.sha256 import split
from bifente.apdu.transport import InProcessTransport
from bifente.apdu.vitale_spec import MF_VITALE_AID, VITALE_AID
from bifente.simulators.cardos import Card
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.cps3.card import LAYOUT
from bifente.simulators.vitale import Vitale2Card

VERIFY_1234 = "0020000108 31323334FFFFFFFF"
MSE_DST = "002241B6 06 840181 800142"
MSE_AT = "002241A4 06 840182 800102"
MSE_CT = "002241B8 06 840182 80011A"
CERT_SIG = LAYOUT["files"]["cert_signature"]


def tx(card: Card, apdu: str | bytes) -> tuple[bytes, int]:
    """Send raw bytes (hex with spaces allowed); return (data, SW)."""
    raw = bytes.fromhex(apdu.replace(" ", "")) if isinstance(apdu, str) else apdu
    answer = card.transmit(raw)
    assert len(answer) >= 2
    return answer[:-2], int.from_bytes(answer[-2:], "big")


def sw_of(card: Card, apdu: str | bytes) -> int:
    return tx(card, apdu)[1]


def ok(card: Card, apdu: str | bytes) -> bytes:
    data, sw = tx(card, apdu)
    assert sw == 0x9000, f"{sw:04X}"
    return data


@pytest.fixture
def cps() -> Cps3Card:
    card = Cps3Card("gp")
    card.power_on()
    return card


@pytest.fixture
def vitale() -> Vitale2Card:
    card = Vitale2Card("family")
    card.power_on()
    return card


CARDS: dict[str, Callable[[], Card]] = {"cps": lambda: Cps3Card("gp"),
                                        "vitale": lambda: Vitale2Card("family")}


@pytest.fixture(params=sorted(CARDS))
def any_card(request: pytest.FixtureRequest) -> Card:
    card = CARDS[request.param]()
    card.power_on()
    return card


def ias(card: Cps3Card, fid: int):
    return card.mf.children[0x0001].children[fid]


def protocol(card: Card) -> CardProtocol:
    return CardProtocol(InProcessTransport(card))


# -- refusals common to every card -------------------------------------------------------------
@pytest.mark.parametrize("apdu", ["", "00", "00A4", "00A400", "00A4000C05 0102",
                                  "00A4000C02 D0", "00A4000C02 D003 00 FF", "00B00000 0000",
                                  "002A8086 0000 00 AA", "002A8086 0003 0102 0000"])
def test_malformed_apdus_answer_6700(any_card: Card, apdu: str) -> None:
    assert tx(any_card, apdu) == (b"", 0x6700)


@pytest.mark.parametrize("apdu", ["00FE0000", "00440000", "000E000000", "00D6000001 00"])
def test_unknown_ins_answers_6d00(any_card: Card, apdu: str) -> None:
    assert tx(any_card, apdu) == (b"", 0x6D00)


@pytest.mark.parametrize("cla", [0x90, 0xA0, 0xFF])
def test_unsupported_class_answers_6e00(any_card: Card, cla: int) -> None:
    assert tx(any_card, bytes([cla]) + bytes.fromhex("A4000C")) == (b"", 0x6E00)


@pytest.mark.parametrize("apdu", ["00A4000C02 1234", "00A4020C02 1234", "00A4040C05 A000000001",
                                  "00A4040C0D E828BD080F8025000001FF0030", "00A4080C04 0001 1234",
                                  "00A4080C02 5031", "00A4080C04 0002 5031"])
def test_select_unknown_answers_6a82(any_card: Card, apdu: str) -> None:
    assert sw_of(any_card, apdu) == 0x6A82


def test_vitale_has_no_crypto_and_no_pin(vitale: Vitale2Card) -> None:
    assert sw_of(vitale, MSE_DST) == 0x6D00
    assert sw_of(vitale, "002A9E9A00") == 0x6D00
    assert sw_of(vitale, "00200001") == 0x6A88  # no PIN with that reference


# -- SELECT ------------------------------------------------------------------------------------
def test_select_by_path_from_the_mf(cps: Cps3Card) -> None:
    odf = ias(cps, 0x5031).data
    assert ok(cps, "00A4080C04 0001 5031") == b""
    assert ok(cps, "00B0000000") == odf
    ok(cps, "00A4000C")  # back to the MF
    ok(cps, "00A4080C06 3F00 0001 5031")  # a leading 3F00 is tolerated with P1=08 too
    assert ok(cps, "00B0000000") == odf


def test_select_by_path_from_the_current_df(cps: Cps3Card) -> None:
    ok(cps, "00A4040C0D" + CPS_AID.hex())
    ok(cps, "00A4090C02 5031")
    assert ok(cps, "00B0000000") == ias(cps, 0x5031).data
    assert sw_of(cps, "00A4090C02 D003") == 0x6A82  # D003 lives in the MF, not in the IAS DF
    # OpenSC sends P1=09 paths that start with 3F00: they are read from the MF.
    ok(cps, "00A4090C06 3F00 0001 5032")
    assert ok(cps, "00B0000000") == ias(cps, 0x5032).data
    ok(cps, "00A4090C04 3F00 D003")
    assert ok(cps, "00B0000000")[:2] == b"\x5a\x0a"


def test_select_by_path_refusals(cps: Cps3Card) -> None:
    assert sw_of(cps, "00A4080C03 000150") == 0x6700  # odd length
    assert sw_of(cps, "00A4080C04 D003 0001") == 0x6A82  # an EF is not a directory
    assert sw_of(cps, "00A4080C") == 0x6700  # no path at all
    assert sw_of(cps, "00A4000C03 D00300") == 0x6700  # a FID is two bytes
    assert sw_of(cps, "00A40010") == 0x6A86  # P2 must be 00/02/04/0C


def test_select_by_aid(any_card: Card) -> None:
    aid = CPS_AID if isinstance(any_card, Cps3Card) else MF_VITALE_AID
    ok(any_card, "00A4040C" + bytes([len(aid)]).hex() + aid.hex())
    assert any_card.current_df.aid == aid


# A real CPx's EF.ATR and its ECC root, as OpenSC issue #2223 logs them.
REAL_CPX_EF_ATR = bytes.fromhex(
    "80 43 01 B8 46 04 04 B0 EC C1 47 03 94 01 80 4F 08 80 25 00 00 01 FF 01 00 E0 10 02 02 01"
    "04 02 02 01 04 02 02 01 00 02 02 01 00 78 08 06 06 2B 81 22 F8 78 02 82 02 90 00")


def test_ef_atr_is_a_real_cpx_s(cps: Cps3Card) -> None:
    ok(cps, "00A4090C02 2F01")
    assert ok(cps, "00B0000000") == REAL_CPX_EF_ATR
    ok(cps, "00A4000C02 3F00")
    assert ok(cps, "00B09D0000") == REAL_CPX_EF_ATR  # by SFI 1D, as its real FCP says
    assert ok(cps, "00B09E0000")[:3] == b"\x61\x32\x4f"  # EF.DIR by SFI 1E


def test_ef_dir_lists_the_contact_and_contactless_applications(cps: Cps3Card) -> None:
    # Labels and DDOs as iasecc-tool prints them for a real CPx (OpenSC PR #2217); 101 bytes,
    # the size of a real CPx's EF.DIR (#2223); paths and order are inferred (docs/cards.md).
    ok(cps, "00A4090C04 3F00 2F00")
    data = ok(cps, "00B0000000")
    assert len(data) == 0x65
    records = {}
    for record in tlv.decode(data):
        assert record.tag == 0x61
        fields = {child.tag: child.value for child in record.children()}
        assert [child.tag for child in record.children()] == [0x4F, 0x50, 0x51, 0x73]
        records[fields[0x50].decode()] = fields
    assert list(records) == ["CPX IAS CL", "CPX IAS"]
    contact, contactless = records["CPX IAS"], records["CPX IAS CL"]
    assert contact[0x4F] == CPS_AID and contact[0x51] == bytes.fromhex("3F000001")
    assert contactless[0x4F] == CPS_AID_CONTACTLESS
    assert contactless[0x51] == bytes.fromhex("3F000002")
    assert contact[0x73] == contactless[0x73] == b"\x4f\x0d" + CPS_AID


def test_the_contactless_application_is_there_and_empty_over_contact(cps: Cps3Card) -> None:
    fields = fcp_fields(ok(cps, "00A4000402 0002 00"))
    assert fields[0x82].value == b"\x38" and fields[0x83].value == b"\x00\x02"
    assert fields[0x84].value == CPS_AID_CONTACTLESS
    assert sw_of(cps, "00A404000D" + CPS_AID_CONTACTLESS.hex()) == 0x6A86  # P2 = 00, as 0001
    ok(cps, "00A4040C0D" + CPS_AID_CONTACTLESS.hex())
    assert sw_of(cps, "00A4020C02 5031") == 0x6A82  # no ODF, no TokenInfo (STAND-IN)
    assert sw_of(cps, "00A4020C02 5032") == 0x6A82
    # OpenSC commit fcd2e665f, a real CPx: SE GET DATA inside 0002 -> 6A88, from 3F00 -> 9000.
    assert sw_of(cps, "00CB3FFF 0A 4D08 7006 BFFB05 02 7B80") == 0x6A88
    assert fcp_fields(ok(cps, "00A40904 02 3F00 00"))[0x83].value == b"\x3f\x00"
    assert sw_of(cps, "00CB3FFF 0A 4D08 7006 BFFB05 02 7B80 00") == 0x9000
    # Neither the keys nor the PINs are found from there.
    ok(cps, "00A4090C04 3F00 0002")
    assert sw_of(cps, "00CB3FFF 0A 4D08 7006 BF9001 02 A080 00") == 0x6A88
    assert sw_of(cps, "00CB3FFF 0A 4D08 7006 BF8101 02 A080 00") == 0x6A88


def test_the_ecc_root_aid_of_ef_atr_selects_the_mf(cps: Cps3Card) -> None:
    ok(cps, "00A4090C04 3F00 0001")
    # P2 = 00: 9000 and no data, as the real card of #2223 answers.
    assert tx(cps, "00A4040008 8025000001FF0100") == (b"", 0x9000)
    assert cps.current_df is cps.mf
    ok(cps, "00A4040C0D" + CPS_AID.hex())
    # P2 = 04, as OpenSC 0.23 selects it at init and logout: the MF's FCP, named.
    assert fcp_fields(ok(cps, "00A4040408 8025000001FF0100 00"))[0x84].value == \
        bytes.fromhex("8025000001FF0100")
    assert cps.current_df is cps.mf
    # OpenSC then reads the serial by SFI from there.
    assert ok(cps, "00B09C0000")[2:] == bytes.fromhex(cps.profile.serial)
    # The IAS application with P2 = 00 still answers 6A86 (commit 1a3666364).
    assert sw_of(cps, "00A404000D" + CPS_AID.hex()) == 0x6A86


def test_select_mf_with_p1_00_and_no_data(cps: Cps3Card) -> None:
    ok(cps, "00A4080C04 0001 5031")
    ok(cps, "00A4000C")
    assert cps.current_df is cps.mf and cps.current_ef is None


# -- FCP ---------------------------------------------------------------------------------------
def fcp_fields(data: bytes) -> dict[int, tlv.Tlv]:
    (top,) = tlv.decode(data)
    assert top.tag == 0x62
    return {child.tag: child for child in top.children()}


def test_fcp_of_a_transparent_ef(cps: Cps3Card) -> None:
    fields = fcp_fields(ok(cps, "00A4000402 D003 00"))
    assert fields[0x80].value == (12).to_bytes(2, "big")  # 5A 0A + 10 bytes
    assert fields[0x82].value == b"\x01"
    assert fields[0x83].value == b"\xd0\x03"
    (rule,) = fields[0xA1].children()
    assert rule.tag == 0x8C and rule.value == b"\x01\x00"  # read: always


def test_fcp_of_a_protected_ef_and_of_a_df(cps: Cps3Card) -> None:
    fields = fcp_fields(ok(cps, "00A4080404 0001 D120 00"))
    assert fields[0x80].value == len(ias(cps, 0xD120).data).to_bytes(2, "big")
    assert fields[0xA1].children()[0].value == b"\x01\x12"  # read: after the PIN
    fields = fcp_fields(ok(cps, "00A4040400"))
    assert fields[0x82].value == b"\x38" and fields[0x83].value == b"\x3f\x00"
    fields = fcp_fields(ok(cps, "00A404040D" + CPS_AID.hex() + "00"))
    assert fields[0x82].value == b"\x38" and fields[0x84].value == CPS_AID
    assert 0xA1 in fields


def test_fcp_of_a_record_ef(vitale: Vitale2Card) -> None:
    ok(vitale, "00A4040C0E" + MF_VITALE_AID.hex())
    fields = fcp_fields(ok(vitale, "00A4000402 E002 00"))
    assert fields[0x82].value[0] == 0x02 and fields[0x82].value[-1] == 4  # 4 records
    assert fields[0x83].value == b"\xe0\x02"


# -- READ BINARY / READ RECORD -----------------------------------------------------------------
def test_read_binary_past_the_end_answers_6282(cps: Cps3Card) -> None:
    ok(cps, "00A4020C02 D003")
    assert ok(cps, "00B000020A") == bytes.fromhex(cps.profile.serial)
    assert tx(cps, "00B0000C00") == (b"", 0x6282)
    assert tx(cps, "00B0010000") == (b"", 0x6282)
    assert tx(cps, "00B07FFF01") == (b"", 0x6282)


def test_read_binary_with_sfi_from_the_mf(cps: Cps3Card) -> None:
    # OpenSC reads the serial with READ BINARY P1=9C (SFI 1C = EF.SN.ICC D003).
    data = ok(cps, "00B09C0000")
    assert data == b"\x5a\x0a" + bytes.fromhex(cps.profile.serial)
    assert cps.current_ef is cps.mf.children[0xD003]
    assert ok(cps, "00B09C020A") == bytes.fromhex(cps.profile.serial)  # P2 is the offset
    assert sw_of(cps, "00B09B0000") == 0x6A82  # no file with SFI 1B


def test_read_binary_needs_an_ef(any_card: Card) -> None:
    assert sw_of(any_card, "00B0000000") == 0x6986


def test_read_binary_on_a_record_file(vitale: Vitale2Card) -> None:
    ok(vitale, "00A4040C0E" + MF_VITALE_AID.hex())
    ok(vitale, "00A4020C02 E002")
    assert sw_of(vitale, "00B0000000") == 0x6981


def test_read_record(vitale: Vitale2Card) -> None:
    ok(vitale, "00A4040C0E" + MF_VITALE_AID.hex())
    ok(vitale, "00A4020C02 E002")
    records = [ok(vitale, f"00B2{n:02X}0400") for n in range(1, 5)]
    assert all(r[0] == 0x71 for r in records)
    assert "Émma".encode() in records[3]
    assert tx(vitale, "00B2050400") == (b"", 0x6A83)
    assert tx(vitale, "00B2000400") == (b"", 0x6A83)
    assert tx(vitale, "00B2FF0400") == (b"", 0x6A83)
    assert sw_of(vitale, "00B2010000") == 0x6A86  # P2 b3-b1 must be 100 (record number)


def test_read_record_on_a_transparent_file(vitale: Vitale2Card) -> None:
    ok(vitale, "00A4040C0B" + VITALE_AID.hex())
    ok(vitale, "00A4020C02 2001")
    assert sw_of(vitale, "00B2010400") == 0x6981


# -- PIN-protected practice situations ---------------------------------------------------------
def test_situations_need_the_pin(cps: Cps3Card) -> None:
    ok(cps, "00A4080C04 0001 D120")
    assert tx(cps, "00B0000000") == (b"", 0x6982)
    assert ok(cps, VERIFY_1234) == b""
    assert ok(cps, "00B0000000") == ias(cps, 0xD120).data != b""
    ok(cps, "00A4080C04 0001 D12F")
    assert sw_of(cps, "00B0000000") == 0x6282  # an unused situation file is empty


def test_power_off_forgets_the_pin_and_the_selection(cps: Cps3Card) -> None:
    ok(cps, VERIFY_1234)
    ok(cps, "00A4080C04 0001 D120")
    ok(cps, "00B0000000")
    ok(cps, MSE_DST)
    cps.power_off()
    assert cps.power_on() == cps.atr
    assert cps.current_df is cps.mf and cps.current_ef is None
    assert sw_of(cps, "00B0000000") == 0x6986  # nothing selected any more
    assert sw_of(cps, "00200001") == 0x63C3  # not verified, and no try was used
    ok(cps, "00A4080C04 0001 D120")
    assert sw_of(cps, "00B0000000") == 0x6982
    ok(cps, "00A4040C0D" + CPS_AID.hex())
    assert sw_of(cps, "002A9E9A00") == 0x6985  # the MSE is gone too


# -- T=0 behaviour -----------------------------------------------------------------------------
def test_case_4_without_le_answers_61xx(cps: Cps3Card) -> None:
    with_le = ok(cps, "00A4000402 D003 00")
    data, sw = tx(cps, "00A4000402 D003")
    assert data == b"" and sw == 0x6100 | len(with_le)
    assert ok(cps, f"00C00000{len(with_le):02X}") == with_le
    assert sw_of(cps, "00C0000000") == 0x6985  # nothing left to get


def test_pending_response_is_dropped_by_the_next_command(cps: Cps3Card) -> None:
    assert tx(cps, "00A4000402 D003")[1] >> 8 == 0x61
    ok(cps, "00A4000C")
    assert sw_of(cps, "00C0000016") == 0x6985


def test_short_le_answers_6cxx(cps: Cps3Card) -> None:
    fcp = ok(cps, "00A4000402 D003 00")
    assert tx(cps, "00A4000402 D003 04") == (b"", 0x6C00 | len(fcp))
    assert ok(cps, f"00A4000402 D003 {len(fcp):02X}") == fcp
    # READ BINARY honours a short Le: it reads that many bytes (ISO 7816-4 §11.2.3).
    assert ok(cps, "00B0000004") == b"\x5a\x0a\x80\x25"


def test_cps_answers_in_0xe7_chunks(cps: Cps3Card) -> None:
    cert = ias(cps, CERT_SIG).data
    ok(cps, f"00A4080C04 0001 {CERT_SIG:04X}")
    head, sw = tx(cps, "00B0000000")
    assert len(head) == 0xE7 and sw == 0x6119
    assert ok(cps, "00C0000019") == cert[0xE7:256]
    assert head == cert[:0xE7]
    # GET RESPONSE asking for more than 0xE7 still gets 0xE7 at most.
    tx(cps, "00B0010000")
    more, sw = tx(cps, "00C0000000")
    assert (len(more), sw) == (0x19, 0x9000)


def test_protocol_reads_whole_files_through_get_response(cps: Cps3Card) -> None:
    p = protocol(cps)
    p.select_path([0x3F00, 0x0001, CERT_SIG])
    assert p.read_binary_all() == ias(cps, CERT_SIG).data
    p.select_path([0x3F00, 0xD003])
    assert p.read_binary_all(chunk=4) == cps.mf.children[0xD003].data  # 4-byte chunks
    fcp = p.select_path([0x3F00, 0x0001, 0x5031], fcp=True)
    assert fcp_fields(fcp)[0x83].value == b"\x50\x31"


def test_protocol_reads_vitale_records(vitale: Vitale2Card) -> None:
    p = protocol(vitale)
    p.select_aid(MF_VITALE_AID)
    p.select_fid(0xE003)
    assert p.read_record(1)[0] == 0x72


# -- command chaining --------------------------------------------------------------------------
def chained(card: Card, header: str, data: bytes, *, le: str = "00") -> tuple[bytes, int]:
    """Send `data` as a 255-byte chain by hand, return the last answer."""
    pieces = [data[i:i + 255] for i in range(0, len(data), 255)]
    for piece in pieces[:-1]:
        assert tx(card, "1" + header[1:] + f"{len(piece):02X}" + piece.hex()) == (b"", 0x9000)
    return tx(card, header + f"{len(pieces[-1]):02X}" + pieces[-1].hex() + le)


def test_chaining_accumulates_a_decipher(cps: Cps3Card) -> None:
    ok(cps, "00A4040C0D" + CPS_AID.hex())
    ok(cps, MSE_CT)
    ok(cps, VERIFY_1234)
    cryptogram = cps.keys[KeyRef.AUTHENTICATION].public_key().encrypt(b"session key",
                                                                      padding.PKCS1v15())
    assert chained(cps, "002A8086", b"\x81" + cryptogram) == (b"session key", 0x9000)
    assert protocol(cps).transceive(CommandApdu(0x00, 0x2A, 0x80, 0x86, b"\x81" + cryptogram,
                                                le=256), chained=True) == b"session key"


def test_interrupted_chain_answers_6883(cps: Cps3Card) -> None:
    ok(cps, "00A4040C0D" + CPS_AID.hex())
    ok(cps, "102A8086 04 81000102")
    assert sw_of(cps, "00B0000000") == 0x6883  # another INS ends the chain badly
    assert sw_of(cps, "00A4000C") == 0x9000  # and the card is usable again
    ok(cps, "102A8086 04 81000102")
    assert sw_of(cps, "10880000 02 0102") == 0x6883  # a chained piece of another command
    ok(cps, "102A8086 04 81000102")
    assert sw_of(cps, "002A9E9A 00") == 0x6883  # same INS, other P1-P2


def test_chain_over_the_cap_answers_6700(cps: Cps3Card) -> None:
    ok(cps, "00A4040C0D" + CPS_AID.hex())
    piece = "102A8086 FF" + "AB" * 255
    for _ in range(16):  # 16 * 255 = 4080 bytes: still under the 4096-byte cap
        assert sw_of(cps, piece) == 0x9000
    assert sw_of(cps, piece) == 0x6700
    assert sw_of(cps, "002A8086 02 8100 00") == 0x6985  # chain dropped: no MSE, not 6883


# -- MSE / PSO / INTERNAL AUTHENTICATE ---------------------------------------------------------
@pytest.fixture
def app(cps: Cps3Card) -> Cps3Card:
    ok(cps, "00A4040C0D" + CPS_AID.hex())
    return cps


@pytest.mark.parametrize(("apdu", "status"), [
    ("002241B6 06 840199 800142", 0x6A88),  # no such key
    ("002241A4 06 840181 800102", 0x6A88),  # the signature key cannot authenticate
    ("002241B8 06 840181 80011A", 0x6A88),  # nor decipher
    ("002241B6 03 800142", 0x6A88),  # no key at all
    ("002241B6 06 840181 800199", 0x6A80),  # unknown algorithm
    ("002241B6 03 840181", 0x6A80),  # no algorithm
    ("002241B6 02 8405", 0x6A80),  # broken TLV
    ("002241B6 06 840182 800142", 0x6A88),  # the authentication key has no PSO CDS right
    ("002241AA 06 840181 800140", 0x6A80),  # a hash template names no key
    ("002241AA 03 800142", 0x6A80),  # 42 is a signature algorithm, not a hash
    ("002241B4 06 840181 800142", 0x6A86),  # no such template (CCT)
    ("002242B6 06 840181 800142", 0x6A86),
])
def test_mse_refusals(app: Cps3Card, apdu: str, status: int) -> None:
    assert sw_of(app, apdu) == status


def test_mse_set_ht_then_dst_as_opensc_sends_them(app: Cps3Card) -> None:
    # OpenSC's iasecc_set_security_env for SHA256-RSA-PKCS, bytes as a real CPS3 gets them.
    assert tx(app, "002241AA 03 800140") == (b"", 0x9000)
    assert tx(app, "002241B6 06 840181 800142") == (b"", 0x9000)
    assert tx(app, "002241AA 03 800110") == (b"", 0x9000)  # SHA-1: a real CPS3 lists it
    assert tx(app, "002241B6 06 840181 800112") == (b"", 0x9000)


def pso_hash_final(digest: bytes) -> str:
    return "002A90A0 22 9020" + digest.hex()


def test_pso_cds_without_mse_answers_6985(app: Cps3Card) -> None:
    ok(app, VERIFY_1234)
    assert sw_of(app, "002A9E9A 00") == 0x6985
    assert sw_of(app, pso_hash_final(bytes(32))) == 0x6985  # PSO HASH needs the DST too


def test_pso_cds_without_pso_hash_answers_6985(app: Cps3Card) -> None:
    ok(app, VERIFY_1234)
    ok(app, MSE_DST)
    assert sw_of(app, "002A9E9A 00") == 0x6985


def test_pso_cds_without_pin_answers_6982(app: Cps3Card) -> None:
    ok(app, MSE_DST)
    ok(app, pso_hash_final(hashlib.sha256(b"x").digest()))
    assert sw_of(app, "002A9E9A 00") == 0x6982


def signature(card: Card, apdu: str) -> bytes:
    """PSO CDS through GET RESPONSE: the 256-byte signature comes as E7 + 19 bytes."""
    head, sw = tx(card, apdu)
    assert (len(head), sw) == (0xE7, 0x6119)
    return head + ok(card, "00C0000019")


def test_pso_hash_with_a_final_hash_signs_that_hash(app: Cps3Card) -> None:
    ok(app, VERIFY_1234)
    ok(app, MSE_DST)
    message = b"ordonnance du 12 mars"
    ok(app, pso_hash_final(hashlib.sha256(message).digest()))
    sig = signature(app, "002A9E9A 00")
    public = app.keys[KeyRef.SIGNATURE].public_key()
    public.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    assert sw_of(app, "002A9E9A 00") == 0x6985  # the hash is used once


def test_pso_hash_split_signs_the_whole_message(app: Cps3Card) -> None:
    ok(app, VERIFY_1234)
    ok(app, MSE_DST)
    message = bytes(range(256)) * 4 + b"tail"
    state, bits, rest = split(message)
    body = tlv.encode(0x90, state + bits.to_bytes(8, "big")) + tlv.encode(0x80, rest)
    ok(app, CommandApdu(0x00, 0x2A, 0x90, 0xA0, body).to_bytes())
    sig = signature(app, "002A9E9A 00")
    app.keys[KeyRef.SIGNATURE].public_key().verify(
        sig, hashlib.sha256(message).digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))


@pytest.mark.parametrize("body", [
    "90 28" + "00" * 32 + "0000000000000008",  # bit count not a whole number of blocks
    "90 28" + "00" * 32 + "FFFFFFFFFFFFFE00" + "80 40" + "00" * 64,  # count overflows 64 bits
    "90 10" + "00" * 16,  # neither a final hash nor a state
    "90 28" + "00" * 32 + "0000000000000000" + "80 41" + "00" * 65,  # more than one block left
    "90 00 80 41" + "00" * 65,  # nothing hashed and more than one block
    "90 00",  # an empty state and no message
    "90 00 80 01 00 81 00",  # an unknown tag
    "80 01 00",  # no state
    "90 05 0102",  # broken TLV
])
def test_pso_hash_refuses_bad_input(app: Cps3Card, body: str) -> None:
    ok(app, MSE_DST)
    data = bytes.fromhex(body.replace(" ", ""))
    assert sw_of(app, CommandApdu(0x00, 0x2A, 0x90, 0xA0, data).to_bytes()) == 0x6A80


def sign_with_opensc_apdus(card: Cps3Card, message: bytes, *, sha1: bool = False) -> bytes:
    """The APDUs of OpenSC's iasecc_compute_signature_dst: HT, DST, PSO HASH, PSO CDS."""
    name, size, ht, dst = ("sha1", 20, "10", "12") if sha1 else ("sha256", 32, "40", "42")
    ok(card, f"002241AA 03 8001{ht}")
    ok(card, f"002241B6 06 840181 8001{dst}")
    cut = len(message) // 64 * 64
    if cut:  # the state after the whole blocks, as OpenSSL 1.1 exports it
        state = _state_after(name, message[:cut])
        field = tlv.encode(0x90, state + (cut * 8).to_bytes(8, "big"))
    else:
        field = b"\x90\x00"
    field += tlv.encode(0x80, message[cut:])
    assert len(field) < 256 and size
    ok(card, CommandApdu(0x00, 0x2A, 0x90, 0xA0, field).to_bytes())
    return signature(card, "002A9E9A 00")


def _state_after(name: str, blocks: bytes) -> bytes:
    if name == "sha256":
        state, bits, rest = split(blocks)
        assert rest == b"" and bits == len(blocks) * 8
        return state
    from bifente.simulators.cps3 import split_hash
    h = split_hash._SHA1_IV
    for i in range(0, len(blocks), 64):
        h = split_hash._sha1_compress(h, blocks[i:i + 64])
    return b"".join(x.to_bytes(4, "big") for x in h)


@pytest.mark.parametrize("size", [0, 1, 25, 63, 64, 65, 100, 128, 1000])
@pytest.mark.parametrize("sha1", [False, True], ids=["sha256", "sha1"])
def test_split_hash_signs_every_length_as_opensc_cuts_it(app: Cps3Card, size: int,
                                                         sha1: bool) -> None:
    ok(app, VERIFY_1234)
    message = bytes((i * 13 + size) & 0xFF for i in range(size))
    sig = sign_with_opensc_apdus(app, message, sha1=sha1)
    algorithm = hashes.SHA1() if sha1 else hashes.SHA256()
    app.keys[KeyRef.SIGNATURE].public_key().verify(sig, message, padding.PKCS1v15(), algorithm)


def test_pso_hash_disagreeing_with_the_hash_template_answers_6985(app: Cps3Card) -> None:
    ok(app, "002241AA 03 800110")  # SHA-1
    ok(app, "002241B6 06 840181 800142")  # but SHA-256 with RSA
    assert sw_of(app, "002A90A0 05 9000 800161") == 0x6985


def test_internal_authenticate_size_limit(app: Cps3Card) -> None:
    ok(app, VERIFY_1234)
    ok(app, MSE_AT)
    size = 256  # RSA-2048
    too_long = bytes(size * 4 // 10 + 1)  # 103 bytes: over 40 % of the modulus
    assert sw_of(app, CommandApdu(0, 0x88, 0, 0, too_long, le=256).to_bytes()) == 0x6700
    assert sw_of(app, "00880000 00") == 0x6700  # no data at all
    data = bytes(range(size * 4 // 10))  # 102 bytes: accepted
    sig = signature(app, CommandApdu(0, 0x88, 0, 0, data, le=256).to_bytes().hex())
    numbers = app.keys[KeyRef.AUTHENTICATION].public_key().public_numbers()
    block = pow(int.from_bytes(sig, "big"), numbers.e, numbers.n).to_bytes(size, "big")
    assert block == b"\x00\x01" + b"\xff" * (size - 3 - len(data)) + b"\x00" + data


def test_internal_authenticate_needs_mse_and_pin(app: Cps3Card) -> None:
    digest_info = CommandApdu(0, 0x88, 0, 0, bytes(51), le=256).to_bytes().hex()
    assert sw_of(app, digest_info) == 0x6985
    ok(app, MSE_AT)
    assert sw_of(app, digest_info) == 0x6982


@pytest.mark.parametrize("data", [
    b"\x00" + bytes(256),  # no 81 padding indicator
    b"",  # nothing
    b"\x81" + bytes(16),  # wrong cryptogram length
    b"\x81" + b"\xff" * 256,  # larger than the modulus
])
def test_pso_decipher_garbage_answers_6a80(app: Cps3Card, data: bytes) -> None:
    ok(app, VERIFY_1234)
    ok(app, MSE_CT)
    if data:
        assert chained(app, "002A8086", data)[1] == 0x6A80
    else:
        assert sw_of(app, "002A8086 00") == 0x6A80


def test_decipher_is_pkcs1_v15_only(app: Cps3Card) -> None:
    # A real CPS3 lists one decipherment, PKCS#1 v1.5 (algRef 1A, OpenSC #2267): the card
    # refuses any other algorithm in MSE SET CT, the former OAEP stand-in 1B among them.
    ok(app, VERIFY_1234)
    for algo in ("1B", "1C", "0A", "02"):
        assert sw_of(app, f"002241B8 06 840182 8001{algo}") == 0x6A80
    ok(app, "002241B8 06 840182 80011A")
    message = app.keys[KeyRef.AUTHENTICATION].public_key().encrypt(
        b"k" * 32, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    assert chained(app, "002A8086", b"\x81" + message)[1] == 0x6A80  # not PKCS#1 v1.5


def test_unknown_pso_answers_6a86(app: Cps3Card) -> None:
    assert sw_of(app, "002A9E9B 00") == 0x6A86


# -- GET DATA (PIN counters) -------------------------------------------------------------------
SELECT_MF = "00A4090C02 3F00"  # as the vendor's middleware selects it (OpenSC #2275)


def test_get_data_7f41_answers_6a86(app: Cps3Card) -> None:
    ok(app, SELECT_MF)
    assert sw_of(app, "00CB3FFF 0B 4D09 7007 BF8101 03 7F4180 00") == 0x6A86


def test_get_data_of_the_pin_only_from_the_mf(app: Cps3Card) -> None:
    # OpenSC reads a CPx's CHV objects from 3F00 (commit e3a3722ad)
    assert sw_of(app, "00CB3FFF 0A 4D08 7006 BF8101 02 A080 00") == 0x6A88
    ok(app, SELECT_MF)
    assert ok(app, "00CB3FFF 0A 4D08 7006 BF8101 02 A080 00")[:2] == b"\x70\x16"


def counters(card: Card, ref: int) -> dict[int, tlv.Tlv]:
    ok(card, SELECT_MF)
    data = ok(card, f"00CB3FFF 0A 4D08 7006 BF81{ref:02X} 02 A080 00")
    (top,) = tlv.decode(data)
    assert top.tag == 0x70
    (bf,) = top.children()
    assert bf.tag == 0xBF8100 | ref
    (a0,) = bf.children()
    assert a0.tag == 0xA0
    return {t.tag: t for t in a0.children()}


def test_get_data_a0_returns_the_counters(app: Cps3Card) -> None:
    found = counters(app, 0x01)
    assert found[0x9A].value == b"\x03" and found[0x9B].value == b"\x03"
    assert [t.tag for t in found[0xA1].children()] == [0x8C]
    puk = counters(app, 0x02)
    assert (puk[0x9A].value, puk[0x9B].value) == (b"\x0a", b"\x0a")
    assert sw_of(app, "00200001 08 39393939FFFFFFFF") == 0x63C2
    assert counters(app, 0x01)[0x9B].value == b"\x02"


def test_get_data_refusals(app: Cps3Card) -> None:
    ok(app, SELECT_MF)
    assert sw_of(app, "00CB3FFE 0A 4D087006BF810102A080 00") == 0x6A86  # P1-P2
    assert sw_of(app, "00CB3FFF 0A 4D087006BF810902A080 00") == 0x6A88  # no PIN 09
    assert sw_of(app, "00CB3FFF 02 5C00 00") == 0x6A80  # no BF81xx inside
    assert sw_of(app, "00CB3FFF 09 4D07 7005 BF8101 01 A0 00") == 0x6A80  # no length byte
    assert sw_of(app, "00CB3FFF 0A 4D087006BFA00102A080 00") == 0x6A88  # an SDO class not served


def test_get_data_the_acls_of_pin_and_puk(app: Cps3Card) -> None:
    # The PIN's ACL as a real CPx returns it (OpenSC #2275), the PUK's (PR #2217) with its
    # usage counter (9C maximum, 9D remaining).
    assert counters(app, 0x01)[0xA1].children()[0].value == bytes.fromhex("F3000013FF00")
    puk = counters(app, 0x02)
    assert puk[0xA1].children()[0].value == bytes.fromhex("F3FF00FFFF00")
    assert (puk[0x9C].value, puk[0x9D].value) == (b"\x64", b"\x64")


@pytest.mark.parametrize(("ref", "acl", "nr"), [(0x01, "40 11", 1), (0x02, "30 11 11", 0)])
def test_get_data_key_docp_from_the_application(app: Cps3Card, ref: int, acl: str,
                                                nr: int) -> None:
    # What OpenSC's iasecc_set_security_env asks first: the 7F48 form is refused (6A86),
    # then the DOCP (A0): A1 { 8C ACL }, 80 size in bytes, 9E non-repudiation.
    assert sw_of(app, f"00CB3FFF 0B 4D09 7007 BF90{ref:02X} 03 7F4880 00") == 0x6A86
    data = ok(app, f"00CB3FFF 0A 4D08 7006 BF90{ref:02X} 02 A080 00")
    (top,) = tlv.decode(data)
    (bf,) = top.children()
    assert bf.tag == 0xBF9000 | ref
    (docp,) = bf.children()
    fields = {t.tag: t for t in docp.children()}
    assert [t.tag for t in docp.children()] == [0xA1, 0x80, 0x9E]
    assert fields[0xA1].children()[0].value == bytes.fromhex(acl)
    assert fields[0x80].value == b"\x01\x00" and fields[0x9E].value == bytes([nr])
    assert sw_of(app, "00CB3FFF 0A 4D08 7006 BF9003 02 A080 00") == 0x6A88  # no key 0x83
    ok(app, "00A4000C")  # the keys are not found from the MF
    assert sw_of(app, f"00CB3FFF 0A 4D08 7006 BF90{ref:02X} 02 A080 00") == 0x6A88


def test_get_data_security_environments_from_the_mf(cps: Cps3Card) -> None:
    # OpenSC's iasecc_se_get_info: 4D 08 70 06 BF FB 0n 02 7B 80, from 3F00 for CPx.
    for se, chv in ((1, 0x01), (3, 0x02)):
        data = ok(cps, f"00CB3FFF 0A 4D08 7006 BFFB{se:02X} 02 7B80 00")
        assert data == tlv.encode_constructed(0x70, tlv.encode_constructed(
            0xBFFB00 | se, tlv.encode_constructed(0x7B, tlv.encode_constructed(
                0xA4, tlv.encode(0x83, bytes([chv])), tlv.encode(0x95, b"\x08")))))
    # SE 5 answers 9000 from 3F00 on a real CPx (commit fcd2e665f); its content is not public
    assert ok(cps, "00CB3FFF 0A 4D08 7006 BFFB05 02 7B80 00") == bytes.fromhex("7006BFFB05027B00")
    assert sw_of(cps, "00CB3FFF 0A 4D08 7006 BFFB02 02 7B80 00") == 0x6A88  # no SE 2
    ok(cps, "00A4040C0D" + CPS_AID.hex())  # 6A88 inside an application, as inside 0002
    assert sw_of(cps, "00CB3FFF 0A 4D08 7006 BFFB05 02 7B80 00") == 0x6A88


# -- GET CHALLENGE / SELECT P2 -----------------------------------------------------------------
def test_get_challenge_gives_8_fresh_bytes(cps: Cps3Card) -> None:
    first, second = ok(cps, "0084000008"), ok(cps, "0084000008")
    assert len(first) == len(second) == 8 and first != second
    assert sw_of(cps, "0084000010") == 0x6700  # OpenSC only ever asks for 8
    assert sw_of(cps, "0084010008") == 0x6A86


def test_select_with_p2_00_answers_6a86_like_a_real_cpx(cps: Cps3Card) -> None:
    assert tx(cps, "00A404000D" + CPS_AID.hex() + "00") == (b"", 0x6A86)
    assert tx(cps, "00A4000002 D003 00") == (b"", 0x6A86)
    assert cps.current_df is cps.mf  # nothing was selected
    assert fcp_fields(ok(cps, "00A404040D" + CPS_AID.hex() + "00"))[0x84].value == CPS_AID


def test_vitale_still_answers_select_with_p2_00(vitale: Vitale2Card) -> None:
    assert tx(vitale, "00A404000E" + MF_VITALE_AID.hex() + "00")[1] == 0x9000


# -- VERIFY ------------------------------------------------------------------------------------
def test_verify_status_query_does_not_use_a_try(app: Cps3Card) -> None:
    for _ in range(5):
        assert tx(app, "00200001") == (b"", 0x63C3)
    ok(app, VERIFY_1234)
    assert tx(app, "00200001") == (b"", 0x9000)


def test_verify_reset_with_p1_ff(app: Cps3Card) -> None:
    ok(app, VERIFY_1234)
    assert ok(app, "0020FF01") == b""
    assert sw_of(app, "00200001") == 0x63C3
    ok(app, "00A4080C04 0001 D120")
    assert sw_of(app, "00B0000000") == 0x6982
    assert sw_of(app, "00208001") == 0x6A86  # other P1 values are refused


@pytest.mark.parametrize("pin", ["3132333435", "31323334 35FFFFFF", "3132", "31323341",
                                 "31 32 33 20", "3132333435363738 39", "FFFFFFFFFFFFFFFF"])
def test_verify_bad_format_answers_6700_without_a_try(app: Cps3Card, pin: str) -> None:
    data = bytes.fromhex(pin.replace(" ", ""))
    assert sw_of(app, CommandApdu(0, 0x20, 0, 1, data).to_bytes()) == 0x6700
    assert sw_of(app, "00200001") == 0x63C3


def test_wrong_pins_count_down_and_block(app: Cps3Card) -> None:
    assert sw_of(app, "00200001 04 31313131") == 0x63C2
    assert sw_of(app, "00200001 04 31313131") == 0x63C1
    ok(app, "00200001 04 31323334")  # unpadded is fine; success resets the counter
    assert sw_of(app, "00200001") == 0x9000
    for expected in (0x63C2, 0x63C1, 0x6983):
        assert sw_of(app, "00200001 04 39393939") == expected
    assert sw_of(app, "00200001") == 0x6983  # blocked: no status, no verification
    assert sw_of(app, VERIFY_1234) == 0x6983
    ok(app, "00A4080C04 0001 D120")
    assert sw_of(app, "00B0000000") == 0x6982


# -- CHANGE REFERENCE DATA / RESET RETRY COUNTER --------------------------------------------
def test_change_pin_old_and_new_unpadded_as_opensc_sends_them(app: Cps3Card) -> None:
    # pkcs15-tool --change-pin: 00 24 00 01 08 <old> <new> (card-iasecc.c iasecc_pin_change)
    assert sw_of(app, "00240001 08 31313131 39393939") == 0x63C2  # wrong old PIN
    ok(app, "00240001 08 31323334 38363432")
    assert sw_of(app, VERIFY_1234) == 0x63C2
    ok(app, "00200001 04 38363432")
    # each code padded with FF to 8 bytes is taken too (a real card's answer is unknown)
    ok(app, "00240001 10 38363432FFFFFFFF 31323334FFFFFFFF")
    ok(app, VERIFY_1234)


@pytest.mark.parametrize(("apdu", "status"), [
    ("00240001 04 31323334", 0x6700),  # the old PIN alone
    ("00240001 06 31323334 3132", 0x6A80),  # a new PIN too short
    ("00240101 08 31323334 38363432", 0x6A86),
    ("00240002 10 3132333435363738 3132333435363738", 0x6982),  # the PUK: change never
])
def test_change_pin_refusals(app: Cps3Card, apdu: str, status: int) -> None:
    assert sw_of(app, apdu) == status
    assert counters(app, 0x01)[0x9B].value == b"\x03"  # no try used


def block(card: Cps3Card) -> None:
    for _ in range(3):
        sw_of(card, "00200001 04 39393939")
    assert sw_of(card, VERIFY_1234) == 0x6983


def test_unblock_verify_puk_then_reset_with_the_new_pin(app: Cps3Card) -> None:
    # pkcs15-tool --unblock-pin: VERIFY PUK, then 00 2C 02 01 04 <new PIN> (iasecc_pin_reset)
    block(app)
    assert sw_of(app, "002C0201 04 34333231") == 0x6982  # PUK not verified yet
    assert sw_of(app, "00200002 08 3030303030303030") == 0x63C9
    ok(app, "00200002 08 3132333435363738")
    ok(app, "002C0201 04 34333231")
    assert sw_of(app, VERIFY_1234) == 0x63C2
    ok(app, "00200001 04 34333231")


def test_unblock_without_a_new_pin_keeps_the_old_one(app: Cps3Card) -> None:
    block(app)
    ok(app, "00200002 08 3132333435363738")
    assert sw_of(app, "002C0301 04 34333231") == 0x6700  # P1 = 03 carries no data
    ok(app, "002C0301")
    ok(app, VERIFY_1234)


@pytest.mark.parametrize(("apdu", "status"), [
    ("002C0001 0C 3132333435363738 34333231", 0x6A86),  # ISO: PUK || new PIN in the data
    ("002C0101 08 3132333435363738", 0x6A86),  # ISO: PUK only
    ("002C0202 08 3132333435363738", 0x6982),  # the PUK itself: reset never
    ("002C0201 03 343332", 0x6A80),  # a new PIN too short
])
def test_unblock_refusals(app: Cps3Card, apdu: str, status: int) -> None:
    block(app)
    ok(app, "00200002 08 3132333435363738")
    assert sw_of(app, apdu) == status
    assert sw_of(app, VERIFY_1234) == 0x6983  # still blocked
