"""Turn card data into text for people and into JSON for programs (full NIRs only on request)."""

from __future__ import annotations

from bifente.apdu.cps import CpsIdentity, PinStatus
from bifente.apdu.cps_objects import PracticeSituation
from bifente.apdu.identity import Nir, mask_nir
from bifente.apdu.vitale import Beneficiary, VitaleCard

__all__ = [
    "PROFESSIONS",
    "cps_text",
    "date_text",
    "situations_text",
    "vitale_text",
]

# TRE_G15 (docs/cards.md, Codes).
PROFESSIONS = {
    "10": "doctor", "21": "pharmacist", "26": "hearing-aid specialist", "28": "optician",
    "40": "dentist", "50": "midwife", "60": "nurse", "69": "psychiatric nurse",
    "70": "physiotherapist", "80": "podiatrist", "86": "lab technician",
    "91": "speech therapist", "92": "orthoptist", "93": "psychologist",
    "94": "occupational therapist", "95": "dietician", "96": "psychomotor therapist",
    "98": "radiographer",
}
# TRE_R38 (docs/cards.md, Codes), the specialties we meet.
SPECIALTIES = {
    "SM25": "occupational medicine", "SM26": "qualified general medicine",
    "SM54": "general medicine", "SM42": "psychiatry", "SM59": "emergency medicine",
    "SM04": "cardiology",
}


def date_text(yyyymmdd: str) -> str:
    """'1978-02-14', or the raw value marked lunar when the date is impossible."""
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:8]
    if not (1 <= int(m or 0) <= 12 and 1 <= int(d or 0) <= 31):
        return f"{y}-{m}-{d} (lunar date: exact birth date unknown)"
    return f"{y}-{m}-{d}"


def _nir_text(nir: Nir, full: bool) -> str:
    return nir.formatted() if full else mask_nir(nir.value)


def cps_text(identity: CpsIdentity, pin: PinStatus | None,
             situations: tuple[PracticeSituation, ...] | None = None) -> str:
    """The professional, for a person."""
    h = identity.holder
    profession = PROFESSIONS.get(h.profession, "profession")
    specialty = SPECIALTIES.get(h.specialty, "")
    lines = [
        f"Professional   {h.display_name}",
        f"Profession     {profession} ({h.profession})",
        f"Specialty      {f'{specialty} ({h.specialty})' if h.specialty else '-'}",
        f"Card type      {h.card_type_name}",
        f"National id    {h.national_id} ({'RPPS' if h.id_type == 8 else 'ADELI'})",
        f"Card serial    {identity.serial}",
    ]
    if pin is not None:
        state = "BLOCKED (unblock with the PUK)" if pin.blocked else \
            f"{pin.tries_left} of {pin.max_tries} tries left"
        lines.append(f"PIN            {state}")
    if situations:
        lines.append(situations_text(situations))
    return "\n".join(lines)


def situations_text(situations: tuple[PracticeSituation, ...]) -> str:
    """One line per practice situation."""
    return "\n".join(f"Situation {s.index:<4} {s.structure_name} ({s.mode_name}, "
                     f"sector {s.sector}, id {s.structure_id})" for s in situations)


def _beneficiary_text(i: int, b: Beneficiary, full_nir: bool) -> list[str]:
    born = f" (born {b.birth_name})" if b.birth_name != b.name else ""
    ins = b.ins
    lines = [
        f"  {i}. {b.first_name} {b.name}{born}, {b.quality_name}",
        f"     Birth date  {date_text(b.birth_date)}",
        f"     NIR         {_nir_text(b.nir, full_nir)}  key {b.nir.key:02d} valid"
        + (" (temporary number)" if b.nir.temporary else ""),
        f"     INS-C       {b.ins_c if b.ins_c else 'none (no INS-C for a temporary number)'}",
        f"     INS         {_nir_text(ins.nir, full_nir)} ({ins.kind}, OID {ins.oid.value})",
    ]
    for r in b.rights:
        expired = "  ** RIGHTS EXPIRED (droits expirés) **" if _past(r.end) else ""
        lines.append(f"     Rights      {date_text(r.start)} to {date_text(r.end)}{expired}")
    return lines


def _past(yyyymmdd: str, today: str | None = None) -> bool:
    """True when a YYYYMMDD date is before today (local date)."""
    import datetime

    now = today or datetime.date.today().strftime("%Y%m%d")
    return yyyymmdd.isdigit() and len(yyyymmdd) == 8 and yyyymmdd < now


def vitale_text(card: VitaleCard, *, full_nir: bool = True) -> str:
    """The card and every beneficiary, for a person at the desk."""
    ins = card.insured
    lines = [
        f"Vitale card    {card.card_type}, serial {card.serial}"
        + (" (TEST CARD)" if card.test_card else ""),
        f"Valid          {date_text(card.validity_start)} to {date_text(card.end_of_validity)}"
        + ("  ** CARD EXPIRED (carte expirée) **" if _past(card.end_of_validity) else ""),
        f"Insured NIR    {_nir_text(ins.nir, full_nir)}",
        f"Scheme         régime {ins.regime}, caisse {ins.caisse}, centre {ins.centre}",
        f"Beneficiaries  {len(card.beneficiaries)}",
    ]
    for i, b in enumerate(card.beneficiaries, start=1):
        lines += _beneficiary_text(i, b, full_nir)
    return "\n".join(lines)


