"""CpsSession: the professional's CPS3 card as its holder thinks of it.

Identity, PIN status, PIN verification from a local source (never the network), PIN change
and unblock, practice situations, certificates, split-hash signatures, authentication and
deciphering (IAS-ECC; docs/cards.md, the simulated CPS3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, cast

from cryptography import x509

from bifente.apdu import pkcs15, tlv
from bifente.apdu.command import CommandApdu
from bifente.apdu.cps_objects import (
    CpsHolder,
    PracticeSituation,
    decode_activity,
    decode_info,
    decode_name,
)
from bifente.apdu.cps_spec import (
    CPS_AID,
    ISSUER_PREFIX,
    Algo,
    Fid,
    KeyRef,
    PinRef,
    is_cps_atr,
    pin_counter_query,
)
from bifente.apdu.errors import (
    ApduError,
    AuthMethodBlocked,
    MalformedData,
    PinBlocked,
    PinCancelled,
    PinNotAvailable,
    UnexpectedCard,
    WrongPin,
    error_for_sw,
)
from bifente.apdu.ins import INS
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.sha256 import split
from bifente.apdu.transport import SecurePinChange, SecurePinEntry

__all__ = ["CpsIdentity", "CpsSession", "PinRequest", "PinSource", "PinStatus"]

# PIN codes go to the card as their digits, unpadded: what OpenSC sends to a real CPx
# (card-iasecc.c pads only for PIN pads); whether a real CPS3 takes FF padding is not public.
NO_PADDING = 0
# DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
HASH_SHA256 = 0x40  # MSE SET HT algorithm reference (TokenInfo of a real CPS3, #2267)


@dataclass(frozen=True)
class PinRequest:
    """What a PIN source is asked for: which code, how long, and why (for the prompt)."""

    reference: int
    min_length: int
    max_length: int
    purpose: str  # "verify", "old", "new", "puk"
    tries_left: int | None = None


# A PIN source returns the digits in a bytearray (wiped by the session after use), or None
# when the holder cancels. It is local by construction: a keypad, a console, a test fixture.
PinSource = Callable[[PinRequest], bytearray | None]


@dataclass(frozen=True)
class PinStatus:
    """The PIN's try counters."""

    tries_left: int
    max_tries: int

    @property
    def blocked(self) -> bool:
        """True when no tries remain."""
        return self.tries_left == 0


@dataclass(frozen=True)
class CpsIdentity:
    """The card's serial and holder, as shown to people."""

    serial: str
    holder: CpsHolder


MF_PATH = Fid.MF.to_bytes(2, "big")


def _path(*fids: int) -> bytes:
    return b"".join(f.to_bytes(2, "big") for f in fids)


def _command(header: bytes, data: bytes) -> CommandApdu:
    """A case 3 command from its 4 header bytes (CLA INS P1 P2) and data."""
    return CommandApdu(header[0], header[1], header[2], header[3], data)


def _wipe(buf: bytearray | None) -> None:
    if buf is not None:
        for i in range(len(buf)):
            buf[i] = 0


def _checked(buf: bytearray, request: PinRequest) -> bytearray:
    """The code itself, once its length and digits are right (ValueError otherwise)."""
    if not (request.min_length <= len(buf) <= request.max_length) or not bytes(buf).isdigit():
        raise ValueError(f"the code must be {request.min_length} to {request.max_length} digits")
    return buf


class CpsSession:
    """Talks to a CPS3 card through the protocol layer."""

    def __init__(self, protocol: CardProtocol) -> None:
        if not is_cps_atr(protocol.atr):
            raise UnexpectedCard("the card is not a CPS3 card (ATR does not match)")
        self.protocol = protocol
        self._dirs: dict[str, bytes] | None = None
        self._objects: dict[str, pkcs15.DataObjectInfo] | None = None
        self._certs: dict[bytes, pkcs15.CertInfo] | None = None
        self._keys: dict[int, pkcs15.KeyInfo] | None = None

    # -- reading files --------------------------------------------------------------------
    def _select(self, path: bytes) -> None:
        """SELECT by path, P1=09 P2=0C, the path written from 3F00.

        The form a real CPx takes from its vendor's middleware and from OpenSC (OpenSC issue
        #2275 log: `00 A4 09 0C 04 3F 00 00 01`, `00 A4 09 0C 02 3F 00`). A path that does
        not start at the MF is read from the IAS application, selected by AID first.
        """
        if not path.startswith(MF_PATH):
            self.protocol.select_aid(CPS_AID)
        self.protocol.transceive(CommandApdu(0x00, INS.SELECT, 0x09, 0x0C, path))

    def _read_path(self, path: bytes) -> bytes:
        self._select(path)
        return self.protocol.read_binary_all()

    def _pkcs15(self) -> dict[str, bytes]:
        if self._dirs is None:
            self._dirs = pkcs15.decode_odf(self._read_path(_path(Fid.MF, Fid.IAS_DF,
                                                                  Fid.ODF)))
        return self._dirs

    def _data_objects(self) -> dict[str, pkcs15.DataObjectInfo]:
        if self._objects is None:
            dodf = self._pkcs15().get("dodf")
            if dodf is None:
                raise MalformedData("CPS card has no DODF in its ODF")
            self._objects = {o.label: o for o in pkcs15.decode_dodf(self._read_path(dodf))}
        return self._objects

    def _read_object(self, label: str) -> bytes:
        info = self._data_objects().get(label)
        if info is None:
            raise MalformedData(f"CPS card has no data object {label}")
        return self._read_path(info.path)

    def serial(self) -> str:
        """The card's PAN from EF.SN.ICC (20 digits starting with the ANS issuer number)."""
        pan = tlv.find_path(self._read_path(_path(Fid.MF, Fid.EF_SN_ICC)), 0x5A)
        if pan is None or not pan.startswith(ISSUER_PREFIX):
            raise UnexpectedCard("EF.SN.ICC does not carry an ANS serial (80 25 00 00 01 ...)")
        return pan.hex()

    def identity(self) -> CpsIdentity:
        """Read the holder's public identity (no PIN needed)."""
        name = decode_name(self._read_object("CPS_NAME_PS"))
        info = decode_info(self._read_object("CPS_INFO_PS"))
        holder = CpsHolder(name["card_type"], name["id_type"], name["id"], name["civility"],
                           name["name"], name["first_name"], info["profession"],
                           info["specialty"])
        return CpsIdentity(self.serial(), holder)

    def situations(self) -> tuple[PracticeSituation, ...]:
        """The practice situations in use (needs the PIN: SecurityStatusNotSatisfied before)."""
        out = []
        for i in range(1, 17):
            situation = decode_activity(i, self._read_object(f"CPS_ACTIVITY_{i:02d}_PS"))
            if situation is not None:
                out.append(situation)
        return tuple(out)

    def certificate(self, key: KeyRef) -> x509.Certificate:
        """The certificate of the signature or authentication key."""
        if self._keys is None or self._certs is None:
            dirs = self._pkcs15()
            self._keys = {k.reference: k for k in pkcs15.decode_prkdf(self._read_path(
                dirs["prkdf"]))}
            self._certs = {c.cert_id: c for c in pkcs15.decode_cdf(self._read_path(
                dirs["cdf"]))}
        info = self._keys.get(key)
        cert = self._certs.get(info.key_id) if info else None
        if cert is None:
            raise MalformedData(f"no certificate for key {key:#04x} on the card")
        try:
            return x509.load_der_x509_certificate(self._read_path(cert.path))
        except ValueError as exc:
            raise MalformedData(f"certificate of key {key:#04x}: {exc}") from exc

    # -- PIN --------------------------------------------------------------------------------
    def pin_status(self, ref: int = PinRef.PIN) -> PinStatus:
        """Try counters from GET DATA (docs/cards.md); tag 9A = max tries, 9B = tries left.

        Asked from the MF: a CPx serves its PIN objects there (OpenSC commit e3a3722ad; the
        vendor's middleware does the same in OpenSC issue #2275).
        """
        self._select(MF_PATH)
        data = self.protocol.transceive(CommandApdu(0x00, INS.GET_DATA_ODD, 0x3F, 0xFF,
                                                    pin_counter_query(ref), le=256))
        counters = tlv.find_path(data, 0x70, 0xBF8100 | ref, 0xA0)
        if counters is None:
            raise MalformedData("PIN counters missing from GET DATA response")
        found = {t.tag: t.value for t in tlv.decode(counters)}
        if len(found.get(0x9A, b"")) != 1 or len(found.get(0x9B, b"")) != 1:
            raise MalformedData("PIN counters 9A/9B missing or malformed")
        return PinStatus(found[0x9B][0], found[0x9A][0])

    def _ask(self, source: PinSource | None, request: PinRequest) -> bytearray:
        if source is None:
            raise PinNotAvailable("no local PIN source: the PIN is only typed on a PIN pad")
        code = source(request)
        if code is None:
            raise PinCancelled("PIN entry cancelled")
        return code

    @staticmethod
    def _pin_error(exc: ApduError, blocked: type[Exception] = PinBlocked) -> Exception:
        if exc.sw >> 4 == 0x63C:
            left = exc.sw & 0x0F
            return PinBlocked() if left == 0 else WrongPin(left)
        if isinstance(exc, AuthMethodBlocked):
            return PinBlocked()
        return exc

    def verify_pin(self, source: PinSource | None = None, *, prompt: str = "PIN CPS",
                   timeout: float = 30.0) -> None:
        """Present the PIN; WrongPin / PinBlocked / PinCancelled / PinNotAvailable.

        With no source, a reader with secure PIN entry (the terminal keypad, a PIN pad)
        collects it and the host never sees it. A wrong PIN is never retried here.
        """
        status = self.pin_status()
        if status.blocked:
            raise PinBlocked()
        transport = self.protocol.transport
        if source is None and isinstance(transport, SecurePinEntry):
            template = bytes([0x00, INS.VERIFY, 0x00, PinRef.PIN])
            sw = transport.secure_verify(template, min_length=4, max_length=4,
                                         pad_to=NO_PADDING, pad_byte=0xFF,
                                         prompt=f"{prompt} ({status.tries_left} left)",
                                         timeout=timeout)
            if sw != 0x9000:
                raise self._pin_error(error_for_sw(sw))
            return
        code = self._ask(source, PinRequest(PinRef.PIN, 4, 4, "verify", status.tries_left))
        try:
            _checked(code, PinRequest(PinRef.PIN, 4, 4, "verify"))
            self.protocol.transceive(CommandApdu(0x00, INS.VERIFY, 0x00, PinRef.PIN,
                                                 bytes(code)))
        except ApduError as exc:
            raise self._pin_error(exc) from None
        finally:
            _wipe(code)

    def change_pin(self, source: PinSource | None = None, *, prompt: str = "PIN CPS",
                   timeout: float = 30.0) -> None:
        """CHANGE REFERENCE DATA with old PIN || new PIN (unpadded, as OpenSC sends it).

        The source gives the old then the new PIN. With no source, a reader with secure PIN
        change (the terminal keypad) asks for both.
        """
        self.protocol.select_aid(CPS_AID)
        template = bytes([0x00, INS.CHANGE_REFERENCE_DATA, 0x00, PinRef.PIN])
        transport = self.protocol.transport
        if source is None and isinstance(transport, SecurePinChange):
            sw = transport.secure_change(template, current_length=(4, 4), new_length=(4, 4),
                                         pad_to=NO_PADDING, pad_byte=0xFF, prompt=prompt,
                                         timeout=timeout)
            if sw != 0x9000:
                self._raise_pin_error(error_for_sw(sw))
            return
        old = self._ask(source, PinRequest(PinRef.PIN, 4, 4, "old"))
        new = both = None
        try:
            new = self._ask(source, PinRequest(PinRef.PIN, 4, 4, "new"))
            both = (_checked(old, PinRequest(PinRef.PIN, 4, 4, "old"))
                    + _checked(new, PinRequest(PinRef.PIN, 4, 4, "new")))
            self.protocol.transceive(_command(template, bytes(both)))
        except ApduError as exc:
            self._raise_pin_error(exc)
        finally:
            _wipe(old)
            _wipe(new)
            _wipe(both)

    def unblock_pin(self, source: PinSource | None = None, *, prompt: str = "PUK CPS",
                    timeout: float = 30.0) -> None:
        """VERIFY the PUK, then RESET RETRY COUNTER P1=02 with the new PIN (IAS-ECC).

        The order OpenSC's iasecc_pin_reset follows on a real CPx: the PIN's reset right is
        "user authentication through SE 3" (the PUK), so the PUK is verified on its own and
        the reset carries only the new PIN. The source gives the PUK then the new PIN; with
        no source, a reader with secure PIN entry (the terminal keypad) collects each one.
        """
        self.protocol.select_aid(CPS_AID)
        verify_puk = bytes([0x00, INS.VERIFY, 0x00, PinRef.PUK])
        reset = bytes([0x00, INS.RESET_RETRY_COUNTER, 0x02, PinRef.PIN])
        transport = self.protocol.transport
        if source is None and getattr(transport, "unblocks_in_one_prompt", False):
            # A reader that runs VERIFY PUK then RESET RETRY COUNTER P1=02 itself, from one
            # prompt (the bifente terminal: it builds both APDUs, docs/link-protocol.md).
            sw = cast(SecurePinChange, transport).secure_unblock(
                reset, current_length=(8, 8), new_length=(4, 4), pad_to=NO_PADDING,
                pad_byte=0xFF, prompt=prompt, timeout=timeout)
            if sw != 0x9000:
                self._puk_error(error_for_sw(sw))
            return
        if source is None and isinstance(transport, SecurePinEntry):
            sw = transport.secure_verify(verify_puk, min_length=8, max_length=8,
                                         pad_to=NO_PADDING, pad_byte=0xFF, prompt=prompt,
                                         timeout=timeout)
            if sw != 0x9000:
                self._puk_error(error_for_sw(sw))
            sw = transport.secure_verify(reset, min_length=4, max_length=4,
                                         pad_to=NO_PADDING, pad_byte=0xFF,
                                         prompt="Nouveau PIN CPS", timeout=timeout)
            if sw != 0x9000:
                raise error_for_sw(sw)
            return
        puk = self._ask(source, PinRequest(PinRef.PUK, 8, 8, "puk"))
        new = None
        try:
            new = self._ask(source, PinRequest(PinRef.PIN, 4, 4, "new"))
            _checked(puk, PinRequest(PinRef.PUK, 8, 8, "puk"))
            _checked(new, PinRequest(PinRef.PIN, 4, 4, "new"))
            try:
                self.protocol.transceive(_command(verify_puk, bytes(puk)))
            except ApduError as exc:
                self._puk_error(exc)
            self.protocol.transceive(_command(reset, bytes(new)))
        finally:
            _wipe(puk)
            _wipe(new)

    def _raise_pin_error(self, exc: ApduError) -> NoReturn:
        raise self._pin_error(exc) from None

    @staticmethod
    def _puk_error(exc: ApduError) -> NoReturn:
        if exc.sw >> 4 == 0x63C:
            raise WrongPin(exc.sw & 0x0F) from None  # tries left are the PUK's
        if isinstance(exc, AuthMethodBlocked):
            raise AuthMethodBlocked(exc.sw, "PUK blocked: the card must be replaced") from None
        raise exc

    # -- keys -------------------------------------------------------------------------------
    def _mse(self, template: int, key: int, algo: int) -> None:
        data = tlv.encode(0x84, bytes([key])) + tlv.encode(0x80, bytes([algo]))
        self.protocol.transceive(CommandApdu(0x00, INS.MANAGE_SECURITY_ENVIRONMENT, 0x41,
                                             template, data))

    def sign(self, data: bytes, key: KeyRef = KeyRef.SIGNATURE) -> bytes:
        """RSA PKCS#1 v1.5 SHA-256 signature of `data` with either key.

        The signature key signs through the IAS split hash (PSO HASH + PSO CDS). The
        authentication key has no PSO CDS right on a real CPS3 (its PrKDF access rules,
        OpenSC issue #2267): it signs the SHA-256 DigestInfo with INTERNAL AUTHENTICATE, the
        way OpenSC signs RSA-PKCS with it. Both give the same PKCS#1 v1.5 signature.
        """
        if key == KeyRef.AUTHENTICATION:
            return self._internal_authenticate(hashlib.sha256(data).digest())
        state, bits, rest = split(data)
        return self._sign_split(state, bits, rest, key)

    def _sign_split(self, state: bytes, bits: int, rest: bytes, key: KeyRef) -> bytes:
        # The APDUs of OpenSC's iasecc_set_security_env + iasecc_compute_signature_dst:
        # MSE SET HT (SHA-256), MSE SET DST, PSO HASH, PSO CDS.
        self.protocol.select_aid(CPS_AID)
        self.protocol.transceive(CommandApdu(0x00, INS.MANAGE_SECURITY_ENVIRONMENT, 0x41, 0xAA,
                                             tlv.encode(0x80, bytes([HASH_SHA256]))))
        self._mse(0xB6, key, Algo.RSA_PKCS1_SHA256_PARTIAL_HASH)
        # Nothing hashed yet (a message under one block): an empty 90, as OpenSC sends it.
        counted = state + bits.to_bytes(8, "big") if bits else b""
        hash_data = tlv.encode(0x90, counted) + tlv.encode(0x80, rest)
        self.protocol.transceive(CommandApdu(0x00, INS.PERFORM_SECURITY_OPERATION, 0x90, 0xA0,
                                             hash_data))
        return self.protocol.transceive(CommandApdu(0x00, INS.PERFORM_SECURITY_OPERATION,
                                                    0x9E, 0x9A, le=256))

    def authenticate(self, challenge: bytes) -> bytes:
        """INTERNAL AUTHENTICATE: PKCS#1 v1.5 signature of SHA-256(challenge) with CPS_PRIV_AUT."""
        return self._internal_authenticate(hashlib.sha256(challenge).digest())

    def _internal_authenticate(self, digest: bytes) -> bytes:
        self.protocol.select_aid(CPS_AID)
        self._mse(0xA4, KeyRef.AUTHENTICATION, Algo.RSA_PKCS1_INTERNAL_AUTH)
        return self.protocol.transceive(CommandApdu(0x00, INS.INTERNAL_AUTHENTICATE, 0x00,
                                                    0x00, SHA256_DIGEST_INFO + digest, le=256))

    def decipher(self, cryptogram: bytes) -> bytes:
        """PSO DECIPHER of a PKCS#1 v1.5 cryptogram with CPS_PRIV_AUT (chained, 2048 bits).

        PKCS#1 v1.5 is the only decipherment a real CPS3 lists (OpenSC issue #2267): the
        card never returns the raw RSA result, so OAEP cannot be done on it or around it.
        """
        self.protocol.select_aid(CPS_AID)
        self._mse(0xB8, KeyRef.AUTHENTICATION, Algo.RSA_PKCS1_DECIPHER)
        return self.protocol.transceive(
            CommandApdu(0x00, INS.PERFORM_SECURITY_OPERATION, 0x80, 0x86, b"\x81" + cryptogram,
                        le=256), chained=True)
