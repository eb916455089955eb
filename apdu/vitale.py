"""VitaleSession: read the insured person and the beneficiaries of a Vitale 2 card."""

from __future__ import annotations

from dataclasses import dataclass, field

from bifente.apdu import tlv
from bifente.apdu.errors import ApduError, MalformedData, UnexpectedCard
from bifente.apdu.identity import Ins, Nir, compute_ins_c, ins_for, parse_nir
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.vitale_spec import (
    MF_VITALE_AID,
    VITALE_AID,
    BenefTag,
    CardTag,
    InsuredTag,
    RightsTag,
    StandinFid,
    is_test_card,
    is_vitale1_atr,
    is_vitale2_atr,
)

__all__ = ["QUALITIES", "Beneficiary", "InsuredPerson", "RightsPeriod", "VitaleCard",
           "VitaleSession"]

# SESAM-Vitale beneficiary quality codes (docs/cards.md, the simulated Vitale 2).
QUALITIES = {0: "insured", 1: "insured (other)", 2: "spouse", 6: "child", 9: "other"}
MAX_BENEFICIARIES = 6


@dataclass(frozen=True)
class RightsPeriod:
    """A period of mandatory health-insurance (AMO) rights, dates as YYYYMMDD."""

    start: str
    end: str


@dataclass(frozen=True)
class Beneficiary:
    """One person covered by the card."""

    quality: int
    name: str
    birth_name: str
    first_name: str
    birth_date: str  # YYYYMMDD as on the card; may be lunar
    birth_rank: int
    nationality: str
    nir: Nir = field(repr=False)
    rights: tuple[RightsPeriod, ...] = ()
    environment: str = "production"

    @property
    def quality_name(self) -> str:
        """'insured', 'spouse', 'child', ..."""
        return QUALITIES.get(self.quality, f"quality {self.quality}")

    @property
    def lunar_birth_date(self) -> bool:
        """True when the day or month is impossible (unknown birth date, docs/cards.md)."""
        month, day = int(self.birth_date[4:6]), int(self.birth_date[6:8])
        return not (1 <= month <= 12 and 1 <= day <= 31)

    @property
    def ins_c(self) -> str | None:
        """The historical INS-C, or None for a temporary NIR (docs/cards.md)."""
        if self.nir.temporary:
            return None
        return compute_ins_c(self.first_name, self.birth_date, self.nir)

    @property
    def ins(self) -> Ins:
        """The INS (NIR or NIA) with its assigning-authority OID."""
        return ins_for(self.nir, environment=self.environment)


@dataclass(frozen=True)
class InsuredPerson:
    """The insured person (the card holder, 'assuré')."""

    nir: Nir = field(repr=False)
    regime: str = ""
    caisse: str = ""
    centre: str = ""
    holder_type: str = ""


@dataclass(frozen=True)
class VitaleCard:
    """Everything read from a Vitale card."""

    card_type: str
    serial: str
    validity_start: str
    end_of_validity: str
    insured: InsuredPerson
    beneficiaries: tuple[Beneficiary, ...]

    @property
    def test_card(self) -> bool:
        """True for a test card (caisse 349, centre 0349)."""
        return is_test_card(self.insured.caisse, self.insured.centre)


def _text(t: tlv.Tlv | None, what: str) -> str:
    if t is None:
        raise MalformedData(f"Vitale data: {what} missing")
    try:
        return t.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedData(f"Vitale data: {what} is not text") from exc


def _fields(template: tlv.Tlv) -> dict[int, tlv.Tlv]:
    return {c.tag: c for c in template.children()}


class VitaleSession:
    """Reads a Vitale 2 card through the protocol layer."""

    def __init__(self, protocol: CardProtocol) -> None:
        atr = protocol.atr
        if is_vitale1_atr(atr):
            raise UnexpectedCard("this is a Vitale 1 card; only Vitale 2 cards are read")
        if not is_vitale2_atr(atr):
            raise UnexpectedCard("the card is not a Vitale card")
        self.protocol = protocol

    def read_public(self) -> tuple[str, list[dict[int, tlv.Tlv]]]:
        """The public TLVs of the VITALE application: (validity start, beneficiaries)."""
        self.protocol.select_aid(VITALE_AID)
        self.protocol.select_fid(StandinFid.PUBLIC)
        start, people = "", []
        for obj in tlv.decode(self.protocol.read_binary_all()):
            if obj.tag == CardTag.CARD:
                start = _text(_fields(obj).get(CardTag.VALIDITY_START), "validity start")
            elif obj.tag == CardTag.BENEFICIARY:
                people.append(_fields(obj))
        return start, people

    def _records(self, fid: int, limit: int) -> list[bytes]:
        self.protocol.select_fid(fid)
        out = []
        for number in range(1, limit + 1):
            try:
                out.append(self.protocol.read_record(number))
            except ApduError as exc:
                if exc.sw == 0x6A83:  # record not found: end of file
                    break
                raise
        return out

    def read(self) -> VitaleCard:
        """Read the card: insured person, 1 to 6 beneficiaries and their rights."""
        validity_start, _public = self.read_public()
        self.protocol.select_aid(MF_VITALE_AID)
        self.protocol.select_fid(StandinFid.INSURED)
        insured_tlv = tlv.decode(self.protocol.read_binary_all())
        if not insured_tlv or insured_tlv[0].tag != InsuredTag.TEMPLATE:
            raise MalformedData("Vitale data: insured-person template missing")
        f = _fields(insured_tlv[0])
        insured = InsuredPerson(
            parse_nir(_text(f.get(InsuredTag.NIR), "insured NIR")),
            _text(f.get(InsuredTag.REGIME), "régime"), _text(f.get(InsuredTag.CAISSE), "caisse"),
            _text(f.get(InsuredTag.CENTRE), "centre"),
            _text(f.get(InsuredTag.HOLDER_TYPE), "holder type"))
        environment = "test" if is_test_card(insured.caisse, insured.centre) else "production"
        rights: dict[int, list[RightsPeriod]] = {}
        for raw in self._records(StandinFid.RIGHTS, 6 * 8):
            r = _fields(tlv.Tlv.parse(raw))
            index = int(_text(r.get(RightsTag.BENEFICIARY), "rights beneficiary"))
            rights.setdefault(index, []).append(RightsPeriod(
                _text(r.get(RightsTag.START), "rights start"),
                _text(r.get(RightsTag.END), "rights end")))
        people = []
        for index, raw in enumerate(self._records(StandinFid.BENEFICIARIES, MAX_BENEFICIARIES),
                                    start=1):
            b = _fields(tlv.Tlv.parse(raw))
            try:
                nir = parse_nir(_text(b.get(BenefTag.CERTIFIED_NIR), "beneficiary NIR"))
            except ValueError as exc:
                raise MalformedData(f"beneficiary {index}: {exc}") from exc
            people.append(Beneficiary(
                int(_text(b.get(BenefTag.QUALITY), "quality")), _text(b.get(BenefTag.NAME), "name"),
                _text(b.get(BenefTag.BIRTH_NAME), "birth name"),
                _text(b.get(BenefTag.FIRST_NAME), "first name"),
                _text(b.get(BenefTag.BIRTH_DATE), "birth date"),
                int(_text(b.get(BenefTag.BIRTH_RANK), "birth rank")),
                _text(b.get(BenefTag.NATIONALITY), "nationality"), nir,
                tuple(rights.get(index, ())), environment))
        if not people:
            raise MalformedData("Vitale data: no beneficiary on the card")
        return VitaleCard(_text(f.get(InsuredTag.CARD_TYPE), "card type"),
                          _text(f.get(InsuredTag.SERIAL), "serial"), validity_start,
                          _text(f.get(InsuredTag.END_OF_VALIDITY), "end of validity"),
                          insured, tuple(people))
