"""A simulated Vitale 2 card built from a profile (docs/cards.md, stand-in data layout)."""

from __future__ import annotations

from bifente.apdu.tlv import encode, encode_constructed
from bifente.apdu.vitale_spec import (
    ATR_VITALE2,
    MF_VITALE_AID,
    VITALE_AID,
    BenefTag,
    CardTag,
    InsuredTag,
    RightsTag,
    StandinFid,
)
from bifente.simulators.cardos import DF, EF, Card, RecordEF
from bifente.simulators.profiles import VitaleProfile, load_vitale

__all__ = ["Vitale2Card"]


def _a(text: str | int) -> bytes:
    return str(text).encode("utf-8")


class Vitale2Card(Card):
    """A Vitale 2 card: public TLVs in VITALE, stand-in protected data in MF_VITALE."""

    atr = ATR_VITALE2

    def __init__(self, profile: str | VitaleProfile = "adult") -> None:
        super().__init__()
        self.profile = load_vitale(profile) if isinstance(profile, str) else profile
        p = self.profile
        public = [encode_constructed(CardTag.CARD, encode(CardTag.VALIDITY_START,
                                                          _a(p.validity_start)))]
        for b in p.beneficiaries:
            public.append(encode_constructed(
                CardTag.BENEFICIARY, encode(CardTag.NAME, _a(b.name)),
                encode(CardTag.FIRST_NAME, _a(b.first_name)),
                encode(CardTag.BIRTH_DATE, _a(b.birth_date)),
                encode(CardTag.NATIONALITY, _a(b.nationality)),
                encode(CardTag.NIR, _a(b.nir))))
        vitale = DF(0x2000, aid=VITALE_AID, name="VITALE")
        vitale.add(EF(StandinFid.PUBLIC, b"".join(public), name="public data"))
        self.mf.add(vitale)

        insured = encode_constructed(
            InsuredTag.TEMPLATE, encode(InsuredTag.CARD_TYPE, b"VITALE 2"),
            encode(InsuredTag.SERIAL, _a(p.serial)),
            encode(InsuredTag.END_OF_VALIDITY, _a(p.end_of_validity)),
            encode(InsuredTag.HOLDER_TYPE, b"0"),
            encode(InsuredTag.NIR, _a(p.insured_nir)),
            encode(InsuredTag.REGIME, _a(p.regime)),
            encode(InsuredTag.CAISSE, _a(p.caisse)),
            encode(InsuredTag.CENTRE, _a(p.centre)))
        people = [encode_constructed(
            BenefTag.TEMPLATE, encode(BenefTag.NAME, _a(b.name)),
            encode(BenefTag.BIRTH_NAME, _a(b.birth_name)),
            encode(BenefTag.FIRST_NAME, _a(b.first_name)),
            encode(BenefTag.BIRTH_DATE, _a(b.birth_date)),
            encode(BenefTag.BIRTH_RANK, _a(b.birth_rank)),
            encode(BenefTag.QUALITY, _a(b.quality)),
            encode(BenefTag.CERTIFIED_NIR, _a(b.nir)),
            encode(BenefTag.NATIONALITY, _a(b.nationality)))
            for b in p.beneficiaries]
        rights = [encode_constructed(
            RightsTag.TEMPLATE, encode(RightsTag.BENEFICIARY, _a(i)),
            encode(RightsTag.START, _a(start)), encode(RightsTag.END, _a(end)))
            for i, b in enumerate(p.beneficiaries, start=1) for start, end in b.rights]
        mf_vitale = DF(0x2100, aid=MF_VITALE_AID, name="MF_VITALE")
        mf_vitale.add(EF(StandinFid.INSURED, insured, name="insured person"))
        mf_vitale.add(RecordEF(StandinFid.BENEFICIARIES, people, name="beneficiaries"))
        mf_vitale.add(RecordEF(StandinFid.RIGHTS, rights, name="rights"))
        self.mf.add(mf_vitale)
