"""PKCS#15 (ISO/IEC 7816-15) directory files of a CPS3 card: ODF, TokenInfo, AODF, PrKDF, CDF, DODF.

Only the subset a CPS3 carries. Tagging follows PKCS#15 v1.1 as OpenSC reads it
(src/libopensc/pkcs15*.c templates): `typeAttributes [1]`, `subClassAttributes [0]` and the ODF
choices wrap a whole TLV (EXPLICIT, a parameterised or CHOICE type); `label [0]`,
`pinReference [0]` and `Path.length [0]` replace the tag (IMPLICIT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from asn1crypto import core, parser

from bifente.apdu.errors import MalformedData

__all__ = [
    "ACCESS_MODES",
    "ALGORITHM_OPERATIONS",
    "KEY_ACCESS_FLAGS",
    "KEY_USAGES",
    "MAX_DIRECTORY_SIZE",
    "MAX_ENTRIES",
    "OBJECT_FLAGS",
    "ODF_KEYS",
    "PIN_FLAGS",
    "PIN_TYPES",
    "TOKEN_FLAGS",
    "AccessRule",
    "AlgorithmInfo",
    "CertInfo",
    "DataObjectInfo",
    "KeyInfo",
    "PinInfo",
    "TokenInfo",
    "decode_aodf",
    "decode_cdf",
    "decode_dodf",
    "decode_odf",
    "decode_prkdf",
    "decode_token_info",
    "encode_aodf",
    "encode_cdf",
    "encode_dodf",
    "encode_odf",
    "encode_prkdf",
    "encode_token_info",
]

# Caps on what a card controls (STYLE habit 6): one extended READ BINARY, and far more
# entries than any CPS directory holds.
MAX_DIRECTORY_SIZE = 0xFFFF
MAX_ENTRIES = 256
MAX_LABEL = 255  # PKCS#15 v1.1 `Label`: UTF8String (SIZE(0..pkcs15-ub-label)), ub = 255
MAX_ID = 255  # PKCS#15 v1.1 `Identifier`: OCTET STRING (SIZE(0..pkcs15-ub-identifier))
MAX_PATH = 16  # OpenSC SC_MAX_PATH_SIZE

# Named bits, in bit order, spelled as the ASN.1 identifiers of PKCS#15 v1.1.
TOKEN_FLAGS = ("readonly", "loginRequired", "prnGeneration", "eidCompliant")  # TokenFlags
OBJECT_FLAGS = ("private", "modifiable")  # CommonObjectFlags
PIN_FLAGS = (  # PinFlags
    "case-sensitive", "local", "change-disabled", "unblock-disabled", "initialized",
    "needs-padding", "unblockingPin", "soPin", "disable-allowed", "integrity-protected",
    "confidentiality-protected", "exchangeRefData",
)
KEY_USAGES = (  # KeyUsageFlags
    "encrypt", "decrypt", "sign", "signRecover", "wrap", "unwrap", "verify", "verifyRecover",
    "derive", "nonRepudiation",
)
PIN_TYPES = ("bcd", "ascii-numeric", "utf8", "half-nibble-bcd", "iso9564-1")  # PinType
KEY_ACCESS_FLAGS = (  # KeyAccessFlags
    "sensitive", "extractable", "alwaysSensitive", "neverExtractable", "local",
)
# AccessMode bits as OpenSC names them (pkcs15.h SC_PKCS15_ACCESS_RULE_MODE_*, ISO 7816-15).
ACCESS_MODES = (
    "read", "update", "execute", "delete", "attribute", "pso_cds", "pso_verify", "pso_decrypt",
    "pso_encrypt", "int_auth", "ext_auth",
)
ALGORITHM_OPERATIONS = (  # PKCS#15 v1.1 AlgorithmInfo.supportedOperations
    "compute-checksum", "compute-signature", "verify-checksum", "verify-signature",
    "encipher", "decipher", "hash", "generate-key",
)

# ODF: PKCS15Objects alternative -> our directory key (OpenSC pkcs15.c c_asn1_odf).
_ODF_ALTERNATIVES = {
    "private_keys": "prkdf",
    "public_keys": "pukdf",
    "certificates": "cdf",
    "data_objects": "dodf",
    "auth_objects": "aodf",
}
ODF_KEYS = tuple(_ODF_ALTERNATIVES.values())

_PADDING = (0x00, 0xFF)  # a tag never starts with these; OpenSC stops there (asn1.c)
_T = TypeVar("_T")
_S = TypeVar("_S", bound=core.Sequence)


# --- ASN.1 types (PKCS#15 v1.1 names) ---------------------------------------------------------

class _Opaque(core.Sequence):
    """A constructed value we accept but never interpret (kept lazy, so never parsed)."""

    _fields: list[tuple[str, type]] = []


class _Path(core.Sequence):
    """Path ::= SEQUENCE { path OCTET STRING, index INTEGER OPT, length [0] INTEGER OPT }."""

    _fields = [
        ("path", core.OctetString),
        ("index", core.Integer, {"optional": True}),
        ("length", core.Integer, {"implicit": 0, "optional": True}),
    ]


class _PKCS15Objects(core.Choice):
    """PKCS15Objects: each alternative is PathOrObjects, a CHOICE, hence EXPLICIT tags."""

    # [2] trustedPublicKeys, [3] secretKeys, [5] trusted/[6] useful certificates: skipped.
    _alternatives = [
        ("private_keys", _Path, {"explicit": 0}),
        ("public_keys", _Path, {"explicit": 1}),
        ("certificates", _Path, {"explicit": 4}),
        ("data_objects", _Path, {"explicit": 7}),
        ("auth_objects", _Path, {"explicit": 8}),
    ]


class _Operations(core.BitString):
    _map = dict(enumerate(ALGORITHM_OPERATIONS))


class _AlgorithmInfo(core.Sequence):
    """AlgorithmInfo (PKCS#15 v1.1; OpenSC pkcs15.c c_asn1_algorithm_info): RSA parameters NULL."""

    _fields = [
        ("reference", core.Integer),
        ("algorithm", core.Integer),  # the PKCS#11 mechanism
        ("parameters", core.Null),
        ("supported_operations", _Operations),
        ("obj_id", core.ObjectIdentifier, {"optional": True}),
        ("alg_ref", core.Integer, {"optional": True}),
    ]


class _SupportedAlgorithms(core.SequenceOf):
    _child_spec = _AlgorithmInfo


class _TokenFlags(core.BitString):
    _map = dict(enumerate(TOKEN_FLAGS))


class _LastUpdate(core.Choice):
    _alternatives = [("generalized_time", core.GeneralizedTime), ("referenced_time", _Path)]


class _TokenInfo(core.Sequence):
    """TokenInfo; the fields after tokenflags are only there so real cards still parse."""

    _fields = [
        ("version", core.Integer),
        ("serial_number", core.OctetString, {"optional": True}),  # optional for OpenSC too
        ("manufacturer_id", core.UTF8String, {"optional": True}),
        ("label", core.UTF8String, {"implicit": 0, "optional": True}),
        ("token_flags", _TokenFlags),
        ("se_info", _Opaque, {"optional": True}),
        ("record_info", _Opaque, {"implicit": 1, "optional": True}),
        ("supported_algorithms", _SupportedAlgorithms, {"implicit": 2, "optional": True}),
        ("issuer_id", core.UTF8String, {"implicit": 3, "optional": True}),
        ("holder_id", core.UTF8String, {"implicit": 4, "optional": True}),
        ("last_update", _LastUpdate, {"explicit": 5, "optional": True}),
        ("preferred_language", core.PrintableString, {"optional": True}),
        ("profile_indication", _Opaque, {"implicit": 6, "optional": True}),
    ]


class _ObjectFlags(core.BitString):
    _map = dict(enumerate(OBJECT_FLAGS))


class _AccessMode(core.BitString):
    _map = dict(enumerate(ACCESS_MODES))


class _AccessControlRule(core.Sequence):
    """AccessControlRule as OpenSC reads it (asn1.c c_asn1_access_control_rule): an authId."""

    _fields = [("access_mode", _AccessMode), ("security_condition", core.OctetString)]


class _AccessControlRules(core.SequenceOf):
    _child_spec = _AccessControlRule


class _CommonObjectAttributes(core.Sequence):
    _fields = [
        ("label", core.UTF8String, {"optional": True}),
        ("flags", _ObjectFlags, {"optional": True}),
        ("auth_id", core.OctetString, {"optional": True}),
        ("user_consent", core.Integer, {"optional": True}),
        ("access_control_rules", _AccessControlRules, {"optional": True}),
    ]


class _CommonAuthenticationObjectAttributes(core.Sequence):
    _fields = [("auth_id", core.OctetString)]  # required by OpenSC's c_asn1_com_ao_attr


class _PinFlags(core.BitString):
    _map = dict(enumerate(PIN_FLAGS))


class _PinType(core.Enumerated):
    _map = dict(enumerate(PIN_TYPES))


class _PinAttributes(core.Sequence):
    _fields = [
        ("pin_flags", _PinFlags),
        ("pin_type", _PinType),
        ("min_length", core.Integer),
        ("stored_length", core.Integer),
        ("max_length", core.Integer, {"optional": True}),
        ("pin_reference", core.Integer, {"implicit": 0, "optional": True}),  # DEFAULT 0
        ("pad_char", core.OctetString, {"optional": True}),
        ("last_pin_change", core.GeneralizedTime, {"optional": True}),
        ("path", _Path, {"optional": True}),
    ]


class _PinObject(core.Sequence):
    """PKCS15Object {CommonAuthenticationObjectAttributes, NULL, PinAttributes}."""

    _fields = [
        ("common_object_attributes", _CommonObjectAttributes),
        ("class_attributes", _CommonAuthenticationObjectAttributes),
        ("type_attributes", _PinAttributes, {"explicit": 1}),
    ]


class _AuthenticationObject(core.Choice):
    # biometricTemplate [0], authKey [1], external [2]: skipped.
    _alternatives = [("pin", _PinObject)]


class _KeyUsageFlags(core.BitString):
    _map = dict(enumerate(KEY_USAGES))


class _KeyAccessFlags(core.BitString):
    _map = dict(enumerate(KEY_ACCESS_FLAGS))


class _CommonKeyAttributes(core.Sequence):
    _fields = [
        ("id", core.OctetString),
        ("usage", _KeyUsageFlags),
        ("native", core.Boolean, {"default": True}),
        ("access_flags", _KeyAccessFlags, {"optional": True}),
        ("key_reference", core.Integer, {"optional": True}),
        ("alg_reference", _Opaque, {"implicit": 1, "optional": True}),  # ISO 7816-15 only
    ]


class _PrivateRSAKeyAttributes(core.Sequence):
    _fields = [("value", _Path), ("modulus_length", core.Integer)]  # keyInfo: ignored


class _PrivateRSAKeyObject(core.Sequence):
    """PKCS15Object {CommonKeyAttributes, CommonPrivateKeyAttributes, PrivateRSAKeyAttributes}."""

    _fields = [
        ("common_object_attributes", _CommonObjectAttributes),
        ("class_attributes", _CommonKeyAttributes),
        ("sub_class_attributes", _Opaque, {"explicit": 0, "optional": True}),  # never written
        ("type_attributes", _PrivateRSAKeyAttributes, {"explicit": 1}),
    ]


class _PrivateKeyObject(core.Choice):
    # privateECCKey [0], privateDHKey [1], ... (OpenSC: GOST [4]): skipped.
    _alternatives = [("private_rsa_key", _PrivateRSAKeyObject)]


class _CommonCertificateAttributes(core.Sequence):
    _fields = [
        ("id", core.OctetString),
        ("authority", core.Boolean, {"default": False}),
        ("identifier", _Opaque, {"optional": True}),
    ]


class _X509CertificateAttributes(core.Sequence):
    _fields = [
        ("value", _Path),  # ObjectValue: only the indirect Path form is supported
        ("subject", _Opaque, {"optional": True}),
        ("issuer", _Opaque, {"explicit": 0, "optional": True}),
        ("serial_number", core.Integer, {"optional": True}),
    ]


class _X509CertificateObject(core.Sequence):
    _fields = [
        ("common_object_attributes", _CommonObjectAttributes),
        ("class_attributes", _CommonCertificateAttributes),
        ("type_attributes", _X509CertificateAttributes, {"explicit": 1}),
    ]


class _CertificateObject(core.Choice):
    # x509AttributeCertificate [0], spkiCertificate [1], pgpCertificate [2], ...: skipped.
    _alternatives = [("x509_certificate", _X509CertificateObject)]


class _CommonDataObjectAttributes(core.Sequence):
    _fields = [
        ("application_name", core.UTF8String, {"optional": True}),
        ("application_oid", core.ObjectIdentifier, {"optional": True}),
    ]


class _OpaqueDataObject(core.Sequence):
    """PKCS15Object {CommonDataObjectAttributes, NULL, Opaque}: [1] wraps the Path itself."""

    # OpenSC pkcs15-data.c c_asn1_type_data_attr: OpaqueDOAttributes ::= ObjectValue, no SEQUENCE.
    _fields = [
        ("common_object_attributes", _CommonObjectAttributes),
        ("class_attributes", _CommonDataObjectAttributes),
        ("type_attributes", _Path, {"explicit": 1}),
    ]


class _DataObject(core.Choice):
    # externalIDO [0], oidDO [1]: skipped.
    _alternatives = [("opaque_do", _OpaqueDataObject)]


# --- Public dataclasses ------------------------------------------------------------------------

def _check_flags(what: str, flags: frozenset[str], names: tuple[str, ...]) -> None:
    unknown = flags - set(names)
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")


def _check_id(what: str, value: bytes) -> None:
    if not 1 <= len(value) <= MAX_ID:
        raise ValueError(f"{what} must be 1..{MAX_ID} bytes, got {len(value)}")


def _check_label(what: str, value: str) -> None:
    if len(value) > MAX_LABEL:
        raise ValueError(f"{what} longer than {MAX_LABEL} characters")


def _check_path(path: bytes) -> None:
    # Concatenated 2-byte FIDs (ISO 7816-4 §7.1.2 path); OpenSC caps them at 16 bytes.
    if not 2 <= len(path) <= MAX_PATH or len(path) % 2:
        raise ValueError(f"path must be 1..8 file identifiers, got {path.hex()!r}")


def _check_reference(reference: int) -> None:
    if not 0 <= reference <= 0xFF:
        raise ValueError(f"reference must be a byte, got {reference}")


@dataclass(frozen=True)
class PinInfo:
    """A PIN object of the AODF; `pad_char` is the byte that fills it up to `stored_length`.

    `unblocked_by` is the authId of the PIN that unblocks this one (the PUK), written as the
    object's CommonObjectAttributes.authId: OpenSC's pkcs15-pin.c looks the PUK up that way.
    """

    label: str
    auth_id: bytes
    reference: int
    min_length: int
    max_length: int
    stored_length: int
    pin_type: str = "ascii-numeric"
    flags: frozenset[str] = frozenset({"local", "initialized"})
    path: bytes | None = None
    pad_char: int | None = None
    unblocked_by: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "auth_id", bytes(self.auth_id))
        object.__setattr__(self, "flags", frozenset(self.flags))
        if self.unblocked_by is not None:
            object.__setattr__(self, "unblocked_by", bytes(self.unblocked_by))
            _check_id("unblocked_by", self.unblocked_by)
        _check_label("label", self.label)
        _check_id("auth_id", self.auth_id)
        _check_reference(self.reference)
        if not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"need 0 <= min_length <= max_length, got "
                             f"{self.min_length}..{self.max_length}")
        if self.stored_length < 0:
            raise ValueError(f"stored_length must be >= 0, got {self.stored_length}")
        if self.pin_type not in PIN_TYPES:
            raise ValueError(f"unknown pin_type {self.pin_type!r}")
        _check_flags("PIN flags", self.flags, PIN_FLAGS)
        if self.path is not None:
            object.__setattr__(self, "path", bytes(self.path))
            _check_path(self.path)
        if self.pad_char is not None and not 0 <= self.pad_char <= 0xFF:
            raise ValueError(f"pad_char must be a byte, got {self.pad_char}")


@dataclass(frozen=True)
class AccessRule:
    """An access control rule: these operations (ACCESS_MODES) need the PIN `auth_id`."""

    modes: frozenset[str]
    auth_id: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", frozenset(self.modes))
        object.__setattr__(self, "auth_id", bytes(self.auth_id))
        _check_flags("access modes", self.modes, ACCESS_MODES)
        _check_id("auth_id", self.auth_id)


@dataclass(frozen=True)
class AlgorithmInfo:
    """A TokenInfo supportedAlgorithms entry: PKCS#11 mechanism, operations, card reference."""

    reference: int
    mechanism: int
    operations: frozenset[str]
    oid: str | None = None
    alg_ref: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", frozenset(self.operations))
        _check_flags("algorithm operations", self.operations, ALGORITHM_OPERATIONS)
        if self.reference < 0 or self.mechanism < 0:
            raise ValueError("reference and mechanism must be >= 0")
        if self.alg_ref is not None:
            _check_reference(self.alg_ref)


@dataclass(frozen=True)
class KeyInfo:
    """An RSA private key of the PrKDF, used under the PIN `auth_id`.

    `path` may be empty: a real CPS3 gives its keys an empty path, the application's own
    DF (OpenSC issue #2267: `Path: e828bd080f8025000001ff0010::`).
    """

    label: str
    key_id: bytes
    auth_id: bytes
    reference: int
    modulus_bits: int
    usage: frozenset[str]
    path: bytes
    access_flags: frozenset[str] = frozenset()
    access_rules: tuple[AccessRule, ...] = ()

    def __post_init__(self) -> None:
        for name in ("key_id", "auth_id", "path"):
            object.__setattr__(self, name, bytes(getattr(self, name)))
        object.__setattr__(self, "usage", frozenset(self.usage))
        object.__setattr__(self, "access_flags", frozenset(self.access_flags))
        object.__setattr__(self, "access_rules", tuple(self.access_rules))
        _check_flags("key access flags", self.access_flags, KEY_ACCESS_FLAGS)
        _check_label("label", self.label)
        _check_id("key_id", self.key_id)
        _check_id("auth_id", self.auth_id)
        _check_reference(self.reference)
        if self.modulus_bits <= 0:
            raise ValueError(f"modulus_bits must be positive, got {self.modulus_bits}")
        _check_flags("key usage", self.usage, KEY_USAGES)
        if self.path:  # empty: the key lives in the application itself (a real CPS3's PrKDF)
            _check_path(self.path)


@dataclass(frozen=True)
class CertInfo:
    """An X.509 certificate of the CDF, stored in the file at `path`."""

    label: str
    cert_id: bytes
    path: bytes
    authority: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cert_id", bytes(self.cert_id))
        object.__setattr__(self, "path", bytes(self.path))
        _check_label("label", self.label)
        _check_id("cert_id", self.cert_id)
        _check_path(self.path)


@dataclass(frozen=True)
class DataObjectInfo:
    """An opaque data object of the DODF; with `auth_id` it is private (needs that PIN)."""

    label: str
    application: str
    path: bytes
    auth_id: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", bytes(self.path))
        _check_label("label", self.label)
        _check_label("application", self.application)
        _check_path(self.path)
        if self.auth_id is not None:
            object.__setattr__(self, "auth_id", bytes(self.auth_id))
            _check_id("auth_id", self.auth_id)


@dataclass(frozen=True)
class TokenInfo:
    """The EF.TokenInfo of the PKCS#15 application."""

    serial: bytes
    manufacturer: str
    label: str
    version: int = 0  # v1
    flags: frozenset[str] = frozenset()
    algorithms: tuple[AlgorithmInfo, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "serial", bytes(self.serial))
        object.__setattr__(self, "flags", frozenset(self.flags))
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        _check_label("manufacturer", self.manufacturer)
        _check_label("label", self.label)
        if self.version < 0:
            raise ValueError(f"version must be >= 0, got {self.version}")
        _check_flags("token flags", self.flags, TOKEN_FLAGS)


# --- Decoding helpers --------------------------------------------------------------------------

@contextmanager
def _malformed(what: str) -> Iterator[None]:
    """Turn asn1crypto's (and our dataclasses') complaints into MalformedData."""
    try:
        yield
    except MalformedData:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        # KeyError: an ENUMERATED value outside the map; IndexError: asn1crypto reading a
        # zero-length BIT STRING (03 00) as flags; the rest: bad or truncated DER.
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise MalformedData(f"{what}: {first_line}") from exc


def _identifiers(choice: type[core.Choice]) -> frozenset[tuple[int, int]]:
    """The (class, tag) pairs that select an alternative of `choice`."""
    ids = set()
    for _name, spec, *params in choice._alternatives:
        options = params[0] if params else {}
        tag = options.get("explicit", options.get("implicit"))
        ids.add((2, tag) if tag is not None else (spec.class_, spec.tag))
    return frozenset(ids)


def _entries(data: bytes, choice: type[core.Choice], what: str) -> Iterator[core.Choice]:
    """Yield each entry of a directory file whose tag `choice` knows, skipping the others."""
    data = bytes(data)
    if len(data) > MAX_DIRECTORY_SIZE:
        raise MalformedData(f"{what}: {len(data)} bytes, over {MAX_DIRECTORY_SIZE}")
    known = _identifiers(choice)
    offset = count = 0
    # The file may be longer than its content: a 00 or FF where a tag would start ends it.
    while offset < len(data) and data[offset] not in _PADDING:
        count += 1
        if count > MAX_ENTRIES:
            raise MalformedData(f"{what}: more than {MAX_ENTRIES} entries")
        with _malformed(f"{what} entry at offset {offset}"):
            # Slicing copies the rest of the file: bounded by the two caps above.
            class_, _method, tag, header, contents, trailer = parser.parse(data[offset:])
            if trailer:
                raise MalformedData(f"{what}: indefinite length at offset {offset} (X.690 §10.1)")
            end = offset + len(header) + len(contents)
            der = data[offset:end]
            entry = choice.load(der, strict=True) if (class_, tag) in known else None
        offset = end
        if entry is not None:
            yield entry


def _decode(data: bytes, choice: type[core.Choice], what: str,
            convert: Callable[[core.Asn1Value], _T]) -> tuple[_T, ...]:
    out = []
    for entry in _entries(data, choice, what):
        with _malformed(what):
            out.append(convert(entry.chosen))
    return tuple(out)


def _names(bits: core.BitString) -> frozenset[str]:
    # Bits beyond the ones we name decode as ints: ignored (newer spec versions add bits).
    return frozenset(name for name in (bits.native or ()) if isinstance(name, str))


def _reference(value: int) -> int:
    # OpenSC <= 0.11.4 (and some cards) wrote references >= 0x80 as a negative one-byte INTEGER.
    return value + 256 if -128 <= value < 0 else value


def _common_object(common: _CommonObjectAttributes) -> tuple[str, frozenset[str], bytes | None]:
    # Field by field: `.native` of the whole would parse the _Opaque parts we mean to skip.
    return common["label"].native or "", _names(common["flags"]), common["auth_id"].native


def _common_attributes(label: str, auth_id: bytes | None = None, *, private: bool = False,
                       rules: Sequence[AccessRule] = ()) -> _CommonObjectAttributes:
    fields: dict[str, object] = {}
    if label:
        fields["label"] = label
    if private:
        fields["flags"] = {"private"}
    if auth_id is not None:
        fields["auth_id"] = auth_id
    if rules:
        fields["access_control_rules"] = [
            {"access_mode": set(rule.modes), "security_condition": rule.auth_id}
            for rule in rules]
    return _sequence(_CommonObjectAttributes, fields)


def _access_rules(common: _CommonObjectAttributes) -> tuple[AccessRule, ...]:
    """The rules whose condition is one authId; other conditions (and, or, not) are skipped."""
    rules = []
    try:
        for rule in common["access_control_rules"]:
            rules.append(AccessRule(_names(rule["access_mode"]),
                                    rule["security_condition"].native))
    except (ValueError, TypeError, KeyError):
        return ()  # ISO 7816-15 SecurityCondition choices we do not model
    return tuple(rules)


def _sequence(cls: type[_S], fields: Mapping[str, object]) -> _S:
    # asn1crypto leaves a SEQUENCE built from {} without content; an empty one is valid here.
    value: _S = cls(dict(fields)) if fields else cls(contents=b"")
    return value


def _path(path: bytes) -> _Path:
    return _Path({"path": path})


def _path_of(path: _Path) -> bytes:
    # Field by field here too: `.native` of a SEQUENCE with unknown trailing fields can fail.
    return bytes(path["path"].native)


# --- ODF ---------------------------------------------------------------------------------------

def encode_odf(directories: Mapping[str, bytes]) -> bytes:
    """ODF content: one PKCS15Objects entry per directory, keys among ODF_KEYS, in tag order."""
    unknown = set(directories) - set(ODF_KEYS)
    if unknown:
        raise ValueError(f"unknown ODF keys {sorted(unknown)}; expected among {ODF_KEYS}")
    out = bytearray()
    for alternative, key in _ODF_ALTERNATIVES.items():
        if key in directories:
            path = bytes(directories[key])
            _check_path(path)
            out += _PKCS15Objects(name=alternative, value=_path(path)).dump()
    return bytes(out)


def decode_odf(data: bytes) -> dict[str, bytes]:
    """Directory key -> path from ODF content; the first entry of a kind wins, others skipped."""
    found: dict[str, bytes] = {}
    for entry in _entries(data, _PKCS15Objects, "ODF"):
        with _malformed("ODF"):
            path = _path_of(entry.chosen)
            _check_path(path)
        found.setdefault(_ODF_ALTERNATIVES[entry.name], path)
    return found


# --- TokenInfo ---------------------------------------------------------------------------------

def encode_token_info(info: TokenInfo) -> bytes:
    """EF.TokenInfo content."""
    fields: dict[str, object] = {"version": info.version, "serial_number": info.serial}
    if info.manufacturer:
        fields["manufacturer_id"] = info.manufacturer
    if info.label:
        fields["label"] = info.label
    fields["token_flags"] = set(info.flags)
    if info.algorithms:
        fields["supported_algorithms"] = [_algorithm_info(a) for a in info.algorithms]
    return bytes(_TokenInfo(fields).dump())


def _algorithm_info(algo: AlgorithmInfo) -> dict[str, object]:
    fields: dict[str, object] = {
        "reference": algo.reference, "algorithm": algo.mechanism, "parameters": None,
        "supported_operations": set(algo.operations)}
    if algo.oid is not None:
        fields["obj_id"] = algo.oid
    if algo.alg_ref is not None:
        fields["alg_ref"] = algo.alg_ref
    return fields


def _null_parameters(entry: _AlgorithmInfo) -> bool:
    """True when the third element is RSA's NULL (asn1crypto would read an OID as absent)."""
    data, offset = entry.contents, 0
    found: tuple[int | None, int | None] = (None, None)
    for _ in range(3):
        class_, _method, tag, header, contents, _trailer = parser.parse(data[offset:])
        offset += len(header) + len(contents)
        found = (class_, tag)
    return found == (0, 5)


def _algorithms(token: _TokenInfo) -> tuple[AlgorithmInfo, ...]:
    """supportedAlgorithms; entries with parameters other than RSA's NULL are skipped."""
    out = []
    for entry in token["supported_algorithms"]:
        try:
            if not _null_parameters(entry):
                continue
            out.append(AlgorithmInfo(entry["reference"].native, entry["algorithm"].native,
                                     _names(entry["supported_operations"]),
                                     entry["obj_id"].native, entry["alg_ref"].native))
        except (ValueError, TypeError, KeyError):
            continue  # EC parameters (an OID where RSA has NULL): not ours to use
    return tuple(out)


def decode_token_info(data: bytes) -> TokenInfo:
    """Parse EF.TokenInfo; trailing 00/FF padding is ignored, anything else is malformed."""
    data = bytes(data)
    if len(data) > MAX_DIRECTORY_SIZE:
        raise MalformedData(f"TokenInfo: {len(data)} bytes, over {MAX_DIRECTORY_SIZE}")
    with _malformed("TokenInfo"):
        _class, _method, _tag, header, contents, trailer = parser.parse(data)
        if trailer:
            raise MalformedData("TokenInfo: indefinite length (X.690 §10.1)")
        end = len(header) + len(contents)
        if end < len(data) and data[end] not in _PADDING:
            raise MalformedData(f"TokenInfo: {len(data) - end} bytes after the SEQUENCE")
        token = _TokenInfo.load(data[:end], strict=True)
        return TokenInfo(
            serial=token["serial_number"].native or b"",
            manufacturer=token["manufacturer_id"].native or "",
            label=token["label"].native or "",
            version=token["version"].native,
            flags=_names(token["token_flags"]),
            algorithms=_algorithms(token),
        )


# --- AODF --------------------------------------------------------------------------------------

def encode_aodf(pins: Sequence[PinInfo]) -> bytes:
    """AODF content: one `pin` AuthenticationObject per PinInfo."""
    out = bytearray()
    for pin in pins:
        attributes: dict[str, object] = {
            "pin_flags": set(pin.flags),
            "pin_type": pin.pin_type,
            "min_length": pin.min_length,
            "stored_length": pin.stored_length,
            "max_length": pin.max_length,
            "pin_reference": pin.reference,
        }
        if pin.pad_char is not None:
            attributes["pad_char"] = bytes((pin.pad_char,))
        if pin.path is not None:
            attributes["path"] = _path(pin.path)
        value = _PinObject({
            "common_object_attributes": _common_attributes(pin.label, pin.unblocked_by),
            "class_attributes": {"auth_id": pin.auth_id},
            "type_attributes": attributes,
        })
        out += _AuthenticationObject(name="pin", value=value).dump()
    return bytes(out)


def _pin_info(obj: _PinObject) -> PinInfo:
    label, _flags, unblocked_by = _common_object(obj["common_object_attributes"])
    attributes = obj["type_attributes"]
    pin_type = attributes["pin_type"].native
    stored = attributes["stored_length"].native
    max_length = attributes["max_length"].native
    if max_length is None:
        # As OpenSC (pkcs15-pin.c): the stored length, in digits for BCD.
        max_length = 2 * stored if pin_type == "bcd" else stored
    pad = attributes["pad_char"].native
    if pad is not None and len(pad) != 1:
        raise MalformedData(f"AODF: padChar of {len(pad)} bytes")
    path = attributes["path"]
    return PinInfo(
        label=label,
        auth_id=obj["class_attributes"]["auth_id"].native,
        # pinReference DEFAULT 0
        reference=_reference(attributes["pin_reference"].native or 0),
        min_length=attributes["min_length"].native,
        max_length=max_length,
        stored_length=stored,
        pin_type=pin_type,
        flags=_names(attributes["pin_flags"]),
        path=None if isinstance(path, core.Void) else _path_of(path),
        pad_char=pad[0] if pad is not None else None,
        unblocked_by=unblocked_by,
    )


def decode_aodf(data: bytes) -> tuple[PinInfo, ...]:
    """PINs of AODF content; other authentication objects are skipped."""
    return _decode(data, _AuthenticationObject, "AODF", _pin_info)


# --- PrKDF -------------------------------------------------------------------------------------

def encode_prkdf(keys: Sequence[KeyInfo]) -> bytes:
    """PrKDF content: one `privateRSAKey` entry per KeyInfo (a private object of its PIN)."""
    out = bytearray()
    for key in keys:
        value = _PrivateRSAKeyObject({
            "common_object_attributes": _common_attributes(key.label, key.auth_id, private=True,
                                                           rules=key.access_rules),
            "class_attributes": _key_attributes(key),
            "type_attributes": {"value": _path(key.path), "modulus_length": key.modulus_bits},
        })
        out += _PrivateKeyObject(name="private_rsa_key", value=value).dump()
    return bytes(out)


def _key_attributes(key: KeyInfo) -> dict[str, object]:
    fields: dict[str, object] = {"id": key.key_id, "usage": set(key.usage)}
    if key.access_flags:
        fields["access_flags"] = set(key.access_flags)
    fields["key_reference"] = key.reference
    return fields


def _key_info(obj: _PrivateRSAKeyObject) -> KeyInfo:
    common = obj["common_object_attributes"]
    label, _flags, auth_id = _common_object(common)
    if auth_id is None:
        raise MalformedData(f"PrKDF: key {label!r} has no authId")
    common_key = obj["class_attributes"]
    reference = common_key["key_reference"].native
    if reference is None:
        raise MalformedData(f"PrKDF: key {label!r} has no keyReference")
    rsa = obj["type_attributes"]
    return KeyInfo(
        label=label,
        key_id=common_key["id"].native,
        auth_id=auth_id,
        reference=_reference(reference),
        modulus_bits=rsa["modulus_length"].native,
        usage=_names(common_key["usage"]),
        path=_path_of(rsa["value"]),
        access_flags=_names(common_key["access_flags"]),
        access_rules=_access_rules(common),
    )


def decode_prkdf(data: bytes) -> tuple[KeyInfo, ...]:
    """RSA private keys of PrKDF content; other key types are skipped."""
    return _decode(data, _PrivateKeyObject, "PrKDF", _key_info)


# --- CDF ---------------------------------------------------------------------------------------

def encode_cdf(certs: Sequence[CertInfo]) -> bytes:
    """CDF content: one `x509Certificate` entry per CertInfo."""
    out = bytearray()
    for cert in certs:
        value = _X509CertificateObject({
            "common_object_attributes": _common_attributes(cert.label),
            "class_attributes": {"id": cert.cert_id, "authority": cert.authority},
            "type_attributes": {"value": _path(cert.path)},
        })
        out += _CertificateObject(name="x509_certificate", value=value).dump()
    return bytes(out)


def _cert_info(obj: _X509CertificateObject) -> CertInfo:
    label, _flags, _auth_id = _common_object(obj["common_object_attributes"])
    common_cert = obj["class_attributes"]
    return CertInfo(
        label=label,
        cert_id=common_cert["id"].native,
        path=_path_of(obj["type_attributes"]["value"]),
        authority=common_cert["authority"].native,
    )


def decode_cdf(data: bytes) -> tuple[CertInfo, ...]:
    """X.509 certificates of CDF content; other certificate types are skipped."""
    return _decode(data, _CertificateObject, "CDF", _cert_info)


# --- DODF --------------------------------------------------------------------------------------

def encode_dodf(objs: Sequence[DataObjectInfo]) -> bytes:
    """DODF content: one `opaqueDO` entry per DataObjectInfo."""
    out = bytearray()
    for obj in objs:
        data_attributes = _sequence(_CommonDataObjectAttributes, (
            {"application_name": obj.application} if obj.application else {}))
        value = _OpaqueDataObject({
            "common_object_attributes": _common_attributes(
                obj.label, obj.auth_id, private=obj.auth_id is not None),
            "class_attributes": data_attributes,
            "type_attributes": _path(obj.path),
        })
        out += _DataObject(name="opaque_do", value=value).dump()
    return bytes(out)


def _data_object_info(obj: _OpaqueDataObject) -> DataObjectInfo:
    label, flags, auth_id = _common_object(obj["common_object_attributes"])
    common_data = obj["class_attributes"]
    return DataObjectInfo(
        label=label,
        application=common_data["application_name"].native or "",
        path=_path_of(obj["type_attributes"]),
        # Only a private object needs its PIN to be read (CommonObjectFlags.private).
        auth_id=auth_id if "private" in flags else None,
    )


def decode_dodf(data: bytes) -> tuple[DataObjectInfo, ...]:
    """Opaque data objects of DODF content; other data object types are skipped."""
    return _decode(data, _DataObject, "DODF", _data_object_info)
