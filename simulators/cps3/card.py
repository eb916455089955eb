"""A simulated CPS3 card (IAS-ECC CPx) built from a profile (FACTS §1).

File system, PKCS#15 directories, holder data, the PIN and its stand-in PUK, two RSA-2048
keys and the IAS commands: MSE SET, split-hash PSO HASH + PSO CDS, INTERNAL AUTHENTICATE,
PSO DECIPHER with chaining, GET DATA PIN counters, CHANGE REFERENCE DATA, RESET RETRY COUNTER.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding

from apdu import pkcs15, tlv
from apdu.command import CommandApdu
from apdu.cps_objects import encode_activity, encode_info, encode_name
from apdu.cps_spec import ATR_CONTACT, CPS_AID, MAX_RESPONSE, Algo, Fid, KeyRef, PinRef
from apdu.errors import MalformedData
from apdu.ins import INS
from apdu.sha256 import finish
from apdu.sw import SW
from simulators.cardos import DF, EF, AccessRule, Card, CardStatus, Pin
from simulators.pki import card_keys
from simulators.profiles import CpsProfile, load_cps

__all__ = ["Cps3Card"]

LAYOUT = tomllib.loads((Path(__file__).parent / "standin_layout.toml").read_text())
PIN_AUTH_ID = b"\x01"
PUK_AUTH_ID = b"\x02"
# PSO P1-P2 (ISO 7816-8 §5): HASH 90A0, COMPUTE DIGITAL SIGNATURE 9E9A, DECIPHER 8086.
PSO_HASH, PSO_CDS, PSO_DECIPHER = 0x90A0, 0x9E9A, 0x8086
# MSE SET templates (ISO 7816-4 §11.5.11): P1 41 = set for computation/decipherment
DST, AT, CT = 0xB6, 0xA4, 0xB8
_TEMPLATE_KEYS = {DST: {KeyRef.SIGNATURE, KeyRef.AUTHENTICATION},
                  AT: {KeyRef.AUTHENTICATION}, CT: {KeyRef.AUTHENTICATION}}
_TEMPLATE_ALGOS = {DST: {Algo.RSA_PKCS1_SHA256_PARTIAL_HASH},
                   AT: {Algo.RSA_PKCS1_INTERNAL_AUTH},
                   CT: {Algo.RSA_PKCS1_DECIPHER, Algo.RSA_OAEP_SHA256_DECIPHER}}


def _bcd(digits: str) -> bytes:
    return bytes.fromhex(digits)


def _path(*fids: int) -> bytes:
    return b"".join(f.to_bytes(2, "big") for f in fids)


class Cps3Card(Card):
    """A CPS3 card personalised from a profile name or a loaded profile."""

    atr = ATR_CONTACT
    max_response = MAX_RESPONSE

    def __init__(self, profile: str | CpsProfile = "gp") -> None:
        super().__init__()
        self.profile = load_cps(profile) if isinstance(profile, str) else profile
        keys = card_keys(self.profile.name)
        self.keys: dict[int, RSAPrivateKey] = {
            KeyRef.SIGNATURE: keys.signature_key,
            KeyRef.AUTHENTICATION: keys.authentication_key,
        }
        p = self.profile
        self.pins[PinRef.PIN] = Pin(PinRef.PIN, p.pin.encode(), 3, p.pin_tries_left, 4, 4,
                                    label="PIN CPS")
        self.pins[PinRef.PUK] = Pin(PinRef.PUK, p.puk.encode(), 10, p.puk_tries_left, 8, 8,
                                    label="PUK CPS")
        self._build_files(keys.signature_cert.public_bytes(Encoding.DER),
                          keys.authentication_cert.public_bytes(Encoding.DER))
        self.handlers.update({
            INS.MANAGE_SECURITY_ENVIRONMENT: self.do_mse,
            INS.PERFORM_SECURITY_OPERATION: self.do_pso,
            INS.INTERNAL_AUTHENTICATE: self.do_internal_authenticate,
            INS.GET_DATA_ODD: self.do_get_data,
            INS.CHANGE_REFERENCE_DATA: self.do_change_reference_data,
            INS.RESET_RETRY_COUNTER: self.do_reset_retry_counter,
        })

    # -- personalisation -----------------------------------------------------------------
    def _build_files(self, sig_cert: bytes, aut_cert: bytes) -> None:
        p, mf = self.profile, self.mf
        d15, files = LAYOUT["pkcs15"], LAYOUT["files"]
        ias_path = _path(Fid.MF, Fid.IAS_DF)
        mf.add(EF(Fid.EF_DIR, tlv.encode_constructed(
            0x61, tlv.encode(0x4F, CPS_AID), tlv.encode(0x50, b"CPS3 IAS")), name="EF.DIR"))
        mf.add(EF(Fid.EF_ATR, _ef_atr(), name="EF.ATR"))
        # SFI 1C: hosts read the serial with READ BINARY P1=9C (OpenSC iasecc_get_serialnr).
        mf.add(EF(Fid.EF_SN_ICC, tlv.encode(0x5A, _bcd(p.serial)), sfi=0x1C, name="EF.SN.ICC"))
        mf.add(EF(Fid.EF_ACTUA, tlv.encode_constructed(
            0xEC, tlv.encode(0x81, _bcd("20250101000000")),
            tlv.encode(0x82, _bcd("20391231235959"))), name="EF_ACTUA"))
        ias = DF(Fid.IAS_DF, aid=CPS_AID, name="IAS")
        mf.add(ias)
        pin_info = pkcs15.PinInfo("PIN CPS", PIN_AUTH_ID, PinRef.PIN, 4, 4, 8,
                                  path=ias_path)
        puk_info = pkcs15.PinInfo("PUK CPS", PUK_AUTH_ID, PinRef.PUK, 8, 8, 8,
                                  flags=frozenset({"local", "initialized", "unblockingPin"}),
                                  path=ias_path)
        keys = [
            pkcs15.KeyInfo("CPS_PRIV_SIG", b"\x01", PIN_AUTH_ID, KeyRef.SIGNATURE, 2048,
                           frozenset({"nonRepudiation"}), ias_path),
            pkcs15.KeyInfo("CPS_PRIV_AUT", b"\x02", PIN_AUTH_ID, KeyRef.AUTHENTICATION, 2048,
                           frozenset({"sign", "decrypt"}), ias_path),
        ]
        certs = [
            pkcs15.CertInfo("Certificat de Signature CPS", b"\x01",
                            ias_path + _path(files["cert_signature"])),
            pkcs15.CertInfo("Certificat d'Authentification CPS", b"\x02",
                            ias_path + _path(files["cert_authentication"])),
        ]
        objects = [
            pkcs15.DataObjectInfo("CPS_NAME_PS", "CPS", ias_path + _path(files["cps_name_ps"])),
            pkcs15.DataObjectInfo("CPS_INFO_PS", "CPS", ias_path + _path(files["cps_info_ps"])),
        ]
        objects += [
            pkcs15.DataObjectInfo(f"CPS_ACTIVITY_{i + 1:02d}_PS", "CPS",
                                  ias_path + _path(Fid.SITUATION_FIRST + i), PIN_AUTH_ID)
            for i in range(16)
        ]
        # An empty directory file is not listed: hosts treat a zero-size EF as absent.
        directories = {name: ias_path + _path(fid) for name, fid in d15.items()
                       if name != "pukdf"}
        ias.add(EF(Fid.ODF, pkcs15.encode_odf(directories), name="ODF"))
        ias.add(EF(Fid.TOKEN_INFO, pkcs15.encode_token_info(pkcs15.TokenInfo(
            _bcd(p.serial), "ANS (simulated)", "CPS3 TEST")), name="TokenInfo"))
        ias.add(EF(d15["aodf"], pkcs15.encode_aodf([pin_info, puk_info]), name="AODF"))
        ias.add(EF(d15["prkdf"], pkcs15.encode_prkdf(keys), name="PrKDF"))
        ias.add(EF(d15["pukdf"], b"", name="PuKDF"))
        ias.add(EF(d15["cdf"], pkcs15.encode_cdf(certs), name="CDF"))
        ias.add(EF(d15["dodf"], pkcs15.encode_dodf(objects), name="DODF"))
        ias.add(EF(files["cert_signature"], sig_cert, name="CERT_SIG"))
        ias.add(EF(files["cert_authentication"], aut_cert, name="CERT_AUT"))
        ias.add(EF(files["cps_name_ps"], encode_name(p.holder), name="CPS_NAME_PS"))
        ias.add(EF(files["cps_info_ps"], encode_info(p.holder.profession, p.holder.specialty,
                                                     p.serial), name="CPS_INFO_PS"))
        for i in range(16):
            situation = p.situations[i] if i < len(p.situations) else None
            ias.add(EF(Fid.SITUATION_FIRST + i,
                       encode_activity(situation) if situation else b"",
                       read=AccessRule(pin=PinRef.PIN), name=f"CPS_ACTIVITY_{i + 1:02d}_PS"))

    # -- security environment ------------------------------------------------------------
    def do_mse(self, c: CommandApdu) -> bytes:
        """MSE SET DST/AT/CT with key (84) and algorithm (80); MSE RESTORE (P1=F3)."""
        if c.p1 == 0xF3:
            self.se.templates.clear()
            self.se.hash_state = None
            return b""
        if c.p1 != 0x41 or c.p2 not in _TEMPLATE_KEYS:
            raise CardStatus(SW.INCORRECT_P1_P2)
        try:
            items = {t.tag: t.value for t in tlv.decode(c.data)}
        except MalformedData as exc:
            raise CardStatus(SW.INCORRECT_DATA) from exc
        key = items.get(0x84, b"")
        algo = items.get(0x80, b"")
        if len(key) != 1 or key[0] not in _TEMPLATE_KEYS[c.p2]:
            raise CardStatus(SW.REFERENCED_DATA_NOT_FOUND)
        if len(algo) != 1 or algo[0] not in _TEMPLATE_ALGOS[c.p2]:
            raise CardStatus(SW.INCORRECT_DATA)
        self.se.templates[c.p2] = (key[0], algo[0])
        if c.p2 == DST:
            self.se.hash_state = None
        return b""

    def _key_for(self, template: int) -> tuple[RSAPrivateKey, int]:
        chosen = self.se.templates.get(template)
        if chosen is None:
            raise CardStatus(SW.CONDITIONS_NOT_SATISFIED)  # no MSE SET before the operation
        if PinRef.PIN not in self.se.verified:
            raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
        return self.keys[chosen[0]], chosen[1]

    # -- PSO ------------------------------------------------------------------------------
    def do_pso(self, c: CommandApdu) -> bytes:
        """PERFORM SECURITY OPERATION: HASH, COMPUTE DIGITAL SIGNATURE, DECIPHER."""
        p1p2 = (c.p1 << 8) | c.p2
        if p1p2 == PSO_HASH:
            return self._pso_hash(c.data)
        if p1p2 == PSO_CDS:
            key, _algo = self._key_for(DST)
            digest = self.se.hash_state
            if digest is None:
                raise CardStatus(SW.CONDITIONS_NOT_SATISFIED)  # no PSO HASH first
            self.se.hash_state = None
            return key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        if p1p2 == PSO_DECIPHER:
            key, algo = self._key_for(CT)
            if not c.data or c.data[0] != 0x81:  # padding indicator: 81 = PKCS#1 cryptogram
                raise CardStatus(SW.INCORRECT_DATA)
            pad = (padding.PKCS1v15() if algo == Algo.RSA_PKCS1_DECIPHER else
                   padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
            try:
                return key.decrypt(c.data[1:], pad)
            except ValueError as exc:
                raise CardStatus(SW.INCORRECT_DATA) from exc
        raise CardStatus(SW.INCORRECT_P1_P2)

    def _pso_hash(self, data: bytes) -> bytes:
        if DST not in self.se.templates:
            raise CardStatus(SW.CONDITIONS_NOT_SATISFIED)
        try:
            items = {t.tag: t.value for t in tlv.decode(data)}
        except MalformedData as exc:
            raise CardStatus(SW.INCORRECT_DATA) from exc
        state = items.get(0x90)
        if state is None:
            raise CardStatus(SW.INCORRECT_DATA)
        if len(state) == 32 and 0x80 not in items:
            self.se.hash_state = state  # the host sent the final hash
            return b""
        if len(state) != 40 or len(items.get(0x80, b"")) > 64:
            raise CardStatus(SW.INCORRECT_DATA)
        bits = int.from_bytes(state[32:], "big")
        try:
            self.se.hash_state = finish(state[:32], bits, items.get(0x80, b""))
        except ValueError as exc:
            raise CardStatus(SW.INCORRECT_DATA) from exc
        return b""

    def do_internal_authenticate(self, c: CommandApdu) -> bytes:
        """INTERNAL AUTHENTICATE: PKCS#1 v1.5 type-1 signature of the data (a DigestInfo)."""
        key, _algo = self._key_for(AT)
        size = key.key_size // 8
        if not c.data or len(c.data) > size * 4 // 10:  # IAS-ECC: at most 40% of the modulus
            raise CardStatus(SW.WRONG_LENGTH)
        block = b"\x00\x01" + b"\xff" * (size - 3 - len(c.data)) + b"\x00" + c.data
        numbers = key.private_numbers()
        n = numbers.public_numbers.n
        return pow(int.from_bytes(block, "big"), numbers.d, n).to_bytes(size, "big")

    # -- PIN management -------------------------------------------------------------------
    def do_get_data(self, c: CommandApdu) -> bytes:
        """GET DATA 00 CB 3F FF with 4D 08 70 06 BF 81 ref 02 A0 80: the PIN counters."""
        if (c.p1, c.p2) != (0x3F, 0xFF):
            raise CardStatus(SW.INCORRECT_P1_P2)
        try:
            ref = _counter_ref(c.data)
        except MalformedData as exc:
            raise CardStatus(SW.INCORRECT_DATA) from exc
        pin = self.pin(ref)
        counters = tlv.encode_constructed(
            0xA0, tlv.encode(0x9A, bytes([pin.max_tries])),
            tlv.encode(0x9B, bytes([pin.tries_left])),
            tlv.encode_constructed(0xA1, tlv.encode(0x8C, bytes.fromhex("F3000013FF00"))))
        return tlv.encode_constructed(0x70, tlv.encode_constructed(0xBF8100 | ref, counters))

    def do_change_reference_data(self, c: CommandApdu) -> bytes:
        """CHANGE REFERENCE DATA (P1=00): old PIN || new PIN, each padded to 8 bytes with FF."""
        if c.p1 != 0x00:
            raise CardStatus(SW.INCORRECT_P1_P2)
        pin = self.pin(c.p2)
        if len(c.data) != 2 * pin.pad_to:
            raise CardStatus(SW.WRONG_LENGTH)
        old, new = c.data[:pin.pad_to], c.data[pin.pad_to:]
        if pin.blocked:
            raise CardStatus(SW.AUTH_METHOD_BLOCKED)
        if not pin.valid_format(new):
            raise CardStatus(SW.INCORRECT_DATA)
        if not pin.check(old):
            self.se.verified.discard(pin.reference)
            raise CardStatus(SW.AUTH_METHOD_BLOCKED if pin.blocked else 0x63C0 | pin.tries_left)
        pin.value = pin.normalise(new)
        self.se.verified.add(pin.reference)
        return b""

    def do_reset_retry_counter(self, c: CommandApdu) -> bytes:
        """RESET RETRY COUNTER: P1=00 PUK || new PIN, P1=01 PUK only (ISO 7816-4 §11.5.10)."""
        pin = self.pin(c.p2)
        puk = self.pins[PinRef.PUK]
        if c.p1 == 0x00 and len(c.data) == 2 * puk.pad_to:
            code, new = c.data[:puk.pad_to], c.data[puk.pad_to:]
        elif c.p1 == 0x01 and len(c.data) == puk.pad_to:
            code, new = c.data, None
        else:
            raise CardStatus(SW.WRONG_LENGTH if c.p1 in (0, 1) else SW.INCORRECT_P1_P2)
        if puk.blocked:
            raise CardStatus(SW.AUTH_METHOD_BLOCKED)
        if new is not None and not pin.valid_format(new):
            raise CardStatus(SW.INCORRECT_DATA)
        if not puk.check(code):
            raise CardStatus(SW.AUTH_METHOD_BLOCKED if puk.blocked else 0x63C0 | puk.tries_left)
        if new is not None:
            pin.value = pin.normalise(new)
        pin.tries_left = pin.max_tries
        return b""


def _counter_ref(data: bytes) -> int:
    """The PIN reference inside 4D { 70 { BF81xx { A0 80 } } }.

    Only the A0 (counters) request is served; OpenSC asks for 7F41 first and falls back to
    A0 on 6A86, as real CPx cards make it do.
    """
    # 4D (extended header list, ISO 7816-4 §8.5.1) is tagged primitive but holds TLVs.
    for outer in tlv.decode(data):
        if outer.tag == 0x4D:
            for inner in tlv.decode(outer.value):
                if inner.tag == 0x70:
                    for obj in inner.children():
                        if obj.tag >> 8 == 0xBF81:
                            if not obj.value.startswith(b"\xa0"):
                                raise CardStatus(SW.INCORRECT_P1_P2)
                            return obj.tag & 0xFF
    raise MalformedData("no BF81xx PIN reference in GET DATA")


def _ef_atr() -> bytes:
    """EF.ATR (IAS-ECC §7.1, ISO 7816-4 §8.2.1.1), laid out as CPx cards publish it.

    A leading 80, then: 43 card service data, 46 pre-issuing data (IC maker, IC type, OS and
    IAS versions), 47 card capabilities, E0 buffer sizes (max send 0xE7 / receive 0x100),
    78 the IAS application identifier, 82 status. No 4F: an extra application AID would make
    hosts select an application this simulator does not have.
    """
    return bytes.fromhex(
        "80"
        "4301B8"
        "4604 04B0ECC1"
        "4703 940180"
        "E010 020200E7 020200E7 02020100 02020100"
        "7808 06062B8122F87802"
        "8202 9000".replace(" ", ""))
