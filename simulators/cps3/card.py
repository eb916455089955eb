"""A simulated CPS3 card (IAS-ECC CPx) built from a profile (docs/cards.md).

File system, PKCS#15 directories, holder data, the PIN and its PUK, two RSA-2048 keys and
the IAS commands: MSE SET (HT, DST, AT, CT), split-hash PSO HASH + PSO CDS, INTERNAL
AUTHENTICATE, PSO DECIPHER with chaining, GET DATA of the PIN, key and SE objects, GET
CHALLENGE, CHANGE REFERENCE DATA, RESET RETRY COUNTER after the PUK. Each answer is the one
OpenSC's IAS-ECC driver gets from a real CPx card where that is public (docs/cards.md).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding

from bifente.apdu import pkcs15, tlv
from bifente.apdu.command import CommandApdu
from bifente.apdu.cps_objects import encode_activity, encode_info, encode_name
from bifente.apdu.cps_spec import (
    ATR_CONTACT,
    CPS_AID,
    CPS_AID_CONTACTLESS,
    MAX_RESPONSE,
    Algo,
    Fid,
    KeyRef,
    PinRef,
)
from bifente.apdu.errors import MalformedData
from bifente.apdu.ins import INS
from bifente.apdu.sw import SW
from bifente.simulators.cardos import DF, EF, AccessRule, Card, CardStatus, Pin
from bifente.simulators.cps3 import sdo
from bifente.simulators.cps3.split_hash import HASH_SHA1, HASH_SHA256, digest_of
from bifente.simulators.pki import card_keys
from bifente.simulators.profiles import CpsProfile, load_cps

__all__ = ["Cps3Card"]

LAYOUT = tomllib.loads((Path(__file__).parent / "standin_layout.toml").read_text())
PIN_AUTH_ID = b"\x01"
PUK_AUTH_ID = b"\x02"
# PKCS#15 ids of the keys and certificates: the AID then 01 / 02 (14 bytes), as a real CPS3
# (OpenSC issue #2267 dumps).
SIG_ID, AUT_ID = CPS_AID + b"\x01", CPS_AID + b"\x02"
# PSO P1-P2 (ISO 7816-8 §5): HASH 90A0, COMPUTE DIGITAL SIGNATURE 9E9A, DECIPHER 8086.
PSO_HASH, PSO_CDS, PSO_DECIPHER = 0x90A0, 0x9E9A, 0x8086
# MSE SET templates (ISO 7816-4 §11.5.11): P1 41 = set for computation/decipherment.
# HT (hash template) comes before DST: OpenSC's iasecc_set_security_env sends it, and that
# path signed on a real CPS3 (OpenSC issue #2267).
DST, AT, CT, HT = 0xB6, 0xA4, 0xB8, 0xAA
# Which key each template may name: the real PrKDF access rules (#2267) give the signature
# key PSO CDS only, the authentication key INTERNAL AUTHENTICATE and PSO DECIPHER only.
_TEMPLATE_KEYS: dict[int, set[int]] = {DST: {KeyRef.SIGNATURE}, AT: {KeyRef.AUTHENTICATION},
                                        CT: {KeyRef.AUTHENTICATION}}
# DST algorithm -> hash (the TokenInfo algRefs of a real CPS3, #2267: 12 SHA-1, 42 SHA-256).
_DST_HASH: dict[int, int] = {Algo.RSA_PKCS1_SHA1_PARTIAL_HASH: HASH_SHA1,
                             Algo.RSA_PKCS1_SHA256_PARTIAL_HASH: HASH_SHA256}
_TEMPLATE_ALGOS: dict[int, set[int]] = {
    DST: set(_DST_HASH), HT: {HASH_SHA1, HASH_SHA256}, AT: {Algo.RSA_PKCS1_INTERNAL_AUTH},
    CT: {Algo.RSA_PKCS1_DECIPHER}}  # no OAEP: a real CPS3 lists PKCS#1 v1.5 only (#2267)
# SHA-1 because a real CPS3 offers it (#2267); the card signs what the host hashed.
_PREHASHED = {HASH_SHA1: hashes.SHA1(), HASH_SHA256: hashes.SHA256()}  # noqa: S303
_KEY_SECTION = {KeyRef.SIGNATURE: "signature", KeyRef.AUTHENTICATION: "authentication"}
CHALLENGE_LENGTH = 8  # OpenSC card-iasecc.c: "IAS/ECC cannot handle other data length than 0x08"
PUK_USAGE = 100  # the PUK's usage counter on a real CPx (OpenSC PR #2217, iasecc-tool)
# The application identifier (4F) in a real CPx's EF.ATR (OpenSC issues #2220, #2223).
# OpenSC selects it by DF name as the "ECC root" at init and logout, then reads EF.SN.ICC
# by SFI from there, so it names the MF; that it is the MF is inferred (STAND-IN).
ECC_ROOT_AID = bytes.fromhex("8025000001FF0100")


def _bcd(digits: str) -> bytes:
    return bytes.fromhex(digits)


def _path(*fids: int) -> bytes:
    return b"".join(f.to_bytes(2, "big") for f in fids)


class Cps3Card(Card):
    """A CPS3 card personalised from a profile name or a loaded profile."""

    atr = ATR_CONTACT
    max_response = MAX_RESPONSE
    # A real CPx answers SELECT with P2 = 00 (FCI) with 6A86, for AIDs and FIDs alike;
    # OpenSC retries with 04 / 0C (commits 1a3666364, 20f359ea0, with real-card logs).
    select_p2 = frozenset({0x02, 0x04, 0x0C})

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
            INS.GET_CHALLENGE: self.do_get_challenge,
            INS.SELECT: self.do_select_cpx,
        })

    # -- personalisation -----------------------------------------------------------------
    def _build_files(self, sig_cert: bytes, aut_cert: bytes) -> None:
        p, mf = self.profile, self.mf
        mf.aid = ECC_ROOT_AID
        d15, files = LAYOUT["pkcs15"], LAYOUT["files"]
        ias_path = _path(Fid.MF, Fid.IAS_DF)
        mf.add(EF(Fid.EF_DIR, _ef_dir(), sfi=0x1E, name="EF.DIR"))
        # SFIs 1E and 1D: the FCPs of a real CPx's 2F00 and 2F01 (88 01 F0 / E8, #2223).
        mf.add(EF(Fid.EF_ATR, _ef_atr(), sfi=0x1D, name="EF.ATR"))
        # SFI 1C: hosts read the serial with READ BINARY P1=9C (OpenSC iasecc_get_serialnr).
        mf.add(EF(Fid.EF_SN_ICC, tlv.encode(0x5A, _bcd(p.serial)), sfi=0x1C, name="EF.SN.ICC"))
        mf.add(EF(Fid.EF_ACTUA, tlv.encode_constructed(
            0xEC, tlv.encode(0x81, _bcd("20250101000000")),
            tlv.encode(0x82, _bcd("20391231235959"))), name="EF_ACTUA"))
        ias = DF(Fid.IAS_DF, aid=CPS_AID, name="IAS")
        mf.add(ias)
        # The contactless application (docs/cards.md), selectable over contact as on a real CPx
        # (OpenSC commit fcd2e665f: `cd 0002` then GET DATA there). Empty: what a real
        # CPS3's 0002 holds over contact is not public, so its files, the ODF and TokenInfo
        # among them, answer 6A82 (STAND-IN), and OpenSC finds no PKCS#15 token there.
        mf.add(DF(Fid.IAS_CL_DF, aid=CPS_AID_CONTACTLESS, name="IAS CL"))
        # The PIN names its PUK (CommonObjectAttributes.authId): OpenSC's pkcs15-tool
        # --unblock-pin finds the PUK, and its length, only that way.
        pin_info = pkcs15.PinInfo("PIN CPS", PIN_AUTH_ID, PinRef.PIN, 4, 4, 8,
                                  path=ias_path, unblocked_by=PUK_AUTH_ID)
        puk_info = pkcs15.PinInfo("PUK CPS", PUK_AUTH_ID, PinRef.PUK, 8, 8, 8,
                                  flags=frozenset({"local", "initialized", "unblockingPin"}),
                                  path=ias_path)
        # Access flags, access rules and the empty key path (the application itself) as a
        # real CPS3's PrKDF has them (OpenSC issue #2267).
        never_out = frozenset({"sensitive", "alwaysSensitive", "neverExtractable"})
        keys = [
            pkcs15.KeyInfo("CPS_PRIV_SIG", SIG_ID, PIN_AUTH_ID, KeyRef.SIGNATURE, 2048,
                           frozenset({"nonRepudiation"}), b"", never_out,
                           (pkcs15.AccessRule(frozenset({"pso_cds"}), PIN_AUTH_ID),)),
            pkcs15.KeyInfo("CPS_PRIV_AUT", AUT_ID, PIN_AUTH_ID, KeyRef.AUTHENTICATION, 2048,
                           frozenset({"sign", "decrypt"}), b"", never_out,
                           (pkcs15.AccessRule(frozenset({"pso_decrypt"}), PIN_AUTH_ID),
                            pkcs15.AccessRule(frozenset({"int_auth"}), PIN_AUTH_ID))),
        ]
        certs = [
            pkcs15.CertInfo("Certificat de Signature CPS", SIG_ID,
                            ias_path + _path(files["cert_signature"])),
            pkcs15.CertInfo("Certificat d'Authentification CPS", AUT_ID,
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
            _bcd(p.serial), LAYOUT["token_info"]["manufacturer"], LAYOUT["token_info"]["label"],
            flags=frozenset({"readonly", "loginRequired"}), algorithms=SUPPORTED_ALGORITHMS)),
            name="TokenInfo"))
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

    def do_select_cpx(self, c: CommandApdu) -> bytes:
        """SELECT; the ECC root AID with P2 = 00 answers 9000 without data, as on a real CPx.

        OpenSC issue #2223 logs `00 A4 04 00 08 <ECC root AID>` -> `90 00` on a real card,
        while the IAS application's AID with P2 = 00 answers 6A86 (commit 1a3666364).
        """
        if (c.p1, c.p2, c.data) == (0x04, 0x00, ECC_ROOT_AID):
            self._select(self.mf)
            return b""
        return self.do_select(c)

    # -- security environment ------------------------------------------------------------
    def do_mse(self, c: CommandApdu) -> bytes:
        """MSE SET HT/DST/AT/CT with key (84) and algorithm (80); MSE RESTORE (P1=F3)."""
        if c.p1 == 0xF3:
            self.se.templates.clear()
            self.se.hash_state = None
            return b""
        if c.p1 != 0x41 or c.p2 not in _TEMPLATE_ALGOS:
            raise CardStatus(SW.INCORRECT_P1_P2)
        try:
            items = {t.tag: t.value for t in tlv.decode(c.data)}
        except MalformedData as exc:
            raise CardStatus(SW.INCORRECT_DATA) from exc
        key = items.get(0x84, b"")
        algo = items.get(0x80, b"")
        if c.p2 == HT:
            if key:  # a hash template names no key
                raise CardStatus(SW.INCORRECT_DATA)
        elif len(key) != 1 or key[0] not in _TEMPLATE_KEYS[c.p2]:
            # STAND-IN status: what a real CPS3 answers for a key outside its rights.
            raise CardStatus(SW.REFERENCED_DATA_NOT_FOUND)
        if len(algo) != 1 or algo[0] not in _TEMPLATE_ALGOS[c.p2]:
            raise CardStatus(SW.INCORRECT_DATA)
        self.se.templates[c.p2] = (key[0] if key else None, algo[0])
        if c.p2 in (DST, HT):
            self.se.hash_state = None
        return b""

    def _key_for(self, template: int) -> tuple[RSAPrivateKey, int]:
        chosen = self.se.templates.get(template)
        if chosen is None or chosen[0] is None or chosen[1] is None:
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
            key, algo = self._key_for(DST)
            digest = self.se.hash_state
            if digest is None:
                raise CardStatus(SW.CONDITIONS_NOT_SATISFIED)  # no PSO HASH first
            self.se.hash_state = None
            return key.sign(digest, padding.PKCS1v15(), Prehashed(_PREHASHED[_DST_HASH[algo]]))
        if p1p2 == PSO_DECIPHER:
            key, _algo = self._key_for(CT)
            if not c.data or c.data[0] != 0x81:  # padding indicator: 81 = PKCS#1 cryptogram
                raise CardStatus(SW.INCORRECT_DATA)
            return _pkcs1_v15_decipher(key, c.data[1:])
        raise CardStatus(SW.INCORRECT_P1_P2)

    def _pso_hash(self, data: bytes) -> bytes:
        dst = self.se.templates.get(DST)
        if dst is None or dst[1] is None:
            raise CardStatus(SW.CONDITIONS_NOT_SATISFIED)
        hash_template = self.se.templates.get(HT)
        algorithm = _DST_HASH[dst[1]]
        if hash_template is not None and hash_template[1] != algorithm:
            raise CardStatus(SW.CONDITIONS_NOT_SATISFIED)  # HT and DST disagree on the hash
        try:
            self.se.hash_state = digest_of(algorithm, data)
        except MalformedData as exc:
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

    def do_get_challenge(self, c: CommandApdu) -> bytes:
        """GET CHALLENGE (ISO 7816-4 §11.5.3): 8 random bytes, the only length OpenSC asks."""
        if (c.p1, c.p2) != (0, 0):
            raise CardStatus(SW.INCORRECT_P1_P2)
        if c.le != CHALLENGE_LENGTH:
            raise CardStatus(SW.WRONG_LENGTH)  # STAND-IN status for other lengths
        return os.urandom(CHALLENGE_LENGTH)

    # -- GET DATA of security data objects ----------------------------------------------
    def do_get_data(self, c: CommandApdu) -> bytes:
        """GET DATA 00 CB 3F FF of an SDO: PIN counters, a key's DOCP, an SE (sdo.py)."""
        if (c.p1, c.p2) != (0x3F, 0xFF):
            raise CardStatus(SW.INCORRECT_P1_P2)
        try:
            request = sdo.parse_request(c.data)
        except MalformedData as exc:
            raise CardStatus(SW.INCORRECT_DATA) from exc
        if request.sdo_class == sdo.CHV:
            return self._chv_data(request)
        if request.sdo_class == sdo.RSA_PRIVATE:
            return self._key_data(request)
        if request.sdo_class == sdo.SE:
            return self._se_data(request)
        raise CardStatus(SW.REFERENCED_DATA_NOT_FOUND)

    def _chv_data(self, request: sdo.SdoRequest) -> bytes:
        # Only the DOCP (A0) is served: a real CPx answers the 7F41 form with 6A86 and OpenSC
        # falls back to A0 (OpenSC issue #2275 log of the vendor's middleware uses A0).
        # From the MF only: OpenSC reads CHV SDOs of a CPx "from 3F00" (commit e3a3722ad),
        # as the vendor's middleware does; elsewhere the object is not found (STAND-IN: what
        # a real CPS3 answers inside 0001 is not public; 6A88 as for an SE inside 0002).
        if self.current_df is not self.mf:
            raise CardStatus(SW.REFERENCED_DATA_NOT_FOUND)
        pin = self.pin(request.reference)
        if request.wanted != sdo.DOCP:
            raise CardStatus(SW.INCORRECT_P1_P2)
        if pin.reference == PinRef.PUK:
            return sdo.chv_answer(pin.reference, pin.max_tries, pin.tries_left,
                                  sdo.CHV_ACL_PUK, PUK_USAGE)
        return sdo.chv_answer(pin.reference, pin.max_tries, pin.tries_left, sdo.CHV_ACL_PIN)

    def _key_data(self, request: sdo.SdoRequest) -> bytes:
        # The keys live in the IAS application: OpenSC selects 3F00/0001 for CPx before this
        # GET DATA (commit e3a3722ad). The 7F48 (public part) form is refused with 6A86,
        # which OpenSC maps to INCORRECT_PARAMETERS and then asks for A0.
        key_ref = request.reference | 0x80
        if self.current_df.aid != CPS_AID or key_ref not in self.keys:
            raise CardStatus(SW.REFERENCED_DATA_NOT_FOUND)
        if request.wanted != sdo.DOCP:
            raise CardStatus(SW.INCORRECT_P1_P2)
        docp = LAYOUT["keys"][_KEY_SECTION[KeyRef(key_ref)]]
        return sdo.key_answer(request.reference, self.keys[key_ref].key_size,
                              bytes.fromhex(docp["acl"]), docp["non_repudiation"])

    def _se_data(self, request: sdo.SdoRequest) -> bytes:
        # From the MF only: a real CPx answers SE GET DATA with 9000 from 3F00 and 6A88
        # inside 0002 (OpenSC commit fcd2e665f).
        chv = LAYOUT["security_environments"].get(str(request.reference))
        if self.current_df is not self.mf or chv is None or request.wanted != sdo.SE:
            raise CardStatus(SW.REFERENCED_DATA_NOT_FOUND)
        return sdo.se_answer(request.reference, chv or None)

    # -- PIN management -------------------------------------------------------------------
    def do_change_reference_data(self, c: CommandApdu) -> bytes:
        """CHANGE REFERENCE DATA (P1=00): old PIN || new PIN, as OpenSC sends it (unpadded).

        The card splits the field at the current PIN's length. Each code padded with FF to
        8 bytes is also taken: whether a real CPS3 takes it is not public.
        """
        if c.p1 != 0x00:
            raise CardStatus(SW.INCORRECT_P1_P2)
        pin = self.pin(c.p2)
        if pin.reference == PinRef.PUK:  # the PUK's ACL: change never (PR #2217)
            raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
        if len(c.data) == 2 * pin.pad_to:
            old, new = c.data[:pin.pad_to], c.data[pin.pad_to:]
        elif len(c.data) > len(pin.value):
            old, new = c.data[:len(pin.value)], c.data[len(pin.value):]
        else:
            raise CardStatus(SW.WRONG_LENGTH)
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
        """RESET RETRY COUNTER once the PUK is verified: P1=02 with the new PIN, P1=03 without.

        The IAS-ECC model OpenSC's iasecc_pin_reset follows: the PIN's reset right is SCB 13
        (user authentication through SE 3, the PUK), so the host VERIFYs the PUK first. The
        ISO forms with the PUK in the data (P1=00/01) are refused: a real CPx is not known
        to take them, and our own host does not send them.
        """
        if c.p1 not in (0x02, 0x03):
            raise CardStatus(SW.INCORRECT_P1_P2)
        pin = self.pin(c.p2)
        if pin.reference == PinRef.PUK or PinRef.PUK not in self.se.verified:
            raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)
        if c.p1 == 0x03 and c.data:
            raise CardStatus(SW.WRONG_LENGTH)
        if c.p1 == 0x02:
            if not pin.valid_format(c.data):
                raise CardStatus(SW.INCORRECT_DATA)
            pin.value = pin.normalise(c.data)
        pin.tries_left = pin.max_tries
        return b""


def _pkcs1_v15_decipher(key: RSAPrivateKey, cryptogram: bytes) -> bytes:
    """RSA then the PKCS#1 v1.5 type 2 check (RFC 8017 §7.2.2); a bad block answers 6A80.

    Done by hand: OpenSSL's implicit rejection (3.2 and later) returns random bytes for a
    bad block where a card answers with a status word.
    """
    numbers = key.private_numbers()
    n, size = numbers.public_numbers.n, key.key_size // 8
    value = int.from_bytes(cryptogram, "big")
    if len(cryptogram) != size or value >= n:
        raise CardStatus(SW.INCORRECT_DATA)
    block = pow(value, numbers.d, n).to_bytes(size, "big")
    end = block.find(b"\x00", 2)
    if block[:2] != b"\x00\x02" or end < 10:  # at least 8 non-zero padding bytes
        raise CardStatus(SW.INCORRECT_DATA)
    return block[end + 1:]


SUPPORTED_ALGORITHMS = (
    # TokenInfo supportedAlgorithms of a real CPS3 (OpenSC issue #2267; the same list as the
    # IAS-ECC card of PR #2279): reference, PKCS#11 mechanism, operations, OID, algRef.
    # The algRefs of 5 and 6 are the MSE bytes OpenSC sends for them (02, 1A), inferred.
    pkcs15.AlgorithmInfo(1, 0x220, frozenset({"hash"}), "1.3.14.3.2.26", HASH_SHA1),
    pkcs15.AlgorithmInfo(2, 0x250, frozenset({"hash"}), "2.16.840.1.101.3.4.2.1", HASH_SHA256),
    pkcs15.AlgorithmInfo(3, 0x06, frozenset({"compute-signature"}), "1.2.840.113549.1.1.5",
                         Algo.RSA_PKCS1_SHA1_PARTIAL_HASH),
    pkcs15.AlgorithmInfo(4, 0x40, frozenset({"compute-signature"}), "1.2.840.113549.1.1.11",
                         Algo.RSA_PKCS1_SHA256_PARTIAL_HASH),
    pkcs15.AlgorithmInfo(5, 0x01, frozenset({"compute-signature"}), "1.2.840.113549.1.1.1",
                         Algo.RSA_PKCS1_INTERNAL_AUTH),
    pkcs15.AlgorithmInfo(6, 0x01, frozenset({"decipher"}), "1.2.840.113549.1.1.1",
                         Algo.RSA_PKCS1_DECIPHER),
)


_EF_DIR_AIDS = {"contact": CPS_AID, "contactless": CPS_AID_CONTACTLESS}


def _ef_dir() -> bytes:
    """EF.DIR (ISO 7816-4 §8.2.1.1): `61 { 4F AID, 50 label, 51 path, 73 DDO }` per application.

    The labels and DDOs are a real CPx's (OpenSC PR #2217); the paths and the record order
    are inferred (standin_layout.toml says how).
    """
    records = []
    for application in LAYOUT["ef_dir"]["order"]:
        entry = LAYOUT["ef_dir"][application]
        records.append(tlv.encode_constructed(
            0x61, tlv.encode(0x4F, _EF_DIR_AIDS[application]),
            tlv.encode(0x50, entry["label"].encode()),
            tlv.encode(0x51, bytes.fromhex(entry["path"])),
            tlv.encode(0x73, bytes.fromhex(entry["ddo"]))))
    return b"".join(records)


def _ef_atr() -> bytes:
    """EF.ATR (IAS-ECC §7.1, ISO 7816-4 §8.2.1.1): a real CPx's, byte for byte.

    OpenSC issues #2220 and #2223 print it: a leading 80, then 43 card service data, 46
    pre-issuing data (IC maker, IC type, OS and IAS versions), 47 card capabilities, 4F the
    ECC root AID, E0 buffer sizes (send 0x104, send under SM 0x104, receive 0x100, receive
    under SM 0x100), 78 an OID, 82 status. OpenSC takes max send = 0x104 - 5 = 0xFF data
    bytes and max receive = 0x100 from E0; the card still cuts answers at 0xE7 with 61xx
    (docs/cards.md), which OpenSC's GET RESPONSE follows.
    """
    return bytes.fromhex(
        "80"
        "4301B8"
        "4604 04B0ECC1"
        "4703 940180"
        "4F08 8025000001FF0100"
        "E010 02020104 02020104 02020100 02020100"
        "7808 06062B8122F87802"
        "8202 9000".replace(" ", ""))
