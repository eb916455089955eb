"""Reading Vitale cards through pyscard -> pcscd -> vpcd -> the simulated Vitale 2 card."""

from __future__ import annotations

import pytest

from bifente.apdu.identity import InsAuthority, compute_ins_c, parse_nir
from bifente.apdu.vitale import VitaleSession
from bifente.simulators.profiles import load_vitale

pytestmark = pytest.mark.pcsc


@pytest.mark.parametrize("profile", ["adult", "family", "corsica", "lunar", "temporary"])
def test_read_matches_profile(vitale, profile: str) -> None:
    _card, protocol = vitale(profile)
    card = VitaleSession(protocol).read()
    expected = load_vitale(profile)
    assert card.serial == expected.serial and card.test_card
    assert card.insured.nir.value == expected.insured_nir
    assert [(b.first_name, b.name, b.birth_name, b.birth_date, b.quality, b.nir.value)
            for b in card.beneficiaries] == [
        (b.first_name, b.name, b.birth_name, b.birth_date, b.quality, b.nir)
        for b in expected.beneficiaries]
    for got, want in zip(card.beneficiaries, expected.beneficiaries, strict=True):
        assert [(r.start, r.end) for r in got.rights] == [tuple(r) for r in want.rights]


def test_family_has_four_people_with_ins_and_ins_c(vitale) -> None:
    _card, protocol = vitale("family")
    card = VitaleSession(protocol).read()
    assert [b.quality_name for b in card.beneficiaries] == ["insured", "spouse", "child", "child"]
    for b in card.beneficiaries:
        assert b.ins.oid is InsAuthority.NIR_TEST  # test card -> test OID
        assert b.ins_c == compute_ins_c(b.first_name, b.birth_date, b.nir)
        assert len(b.ins_c) == 22


def test_corsica_nir_keys(vitale) -> None:
    _card, protocol = vitale("corsica")
    card = VitaleSession(protocol).read()
    assert [b.nir.department for b in card.beneficiaries] == ["2A", "2B"]
    assert all(parse_nir(b.nir.value) == b.nir for b in card.beneficiaries)


def test_lunar_birth_date_kept_and_flagged(vitale) -> None:
    _card, protocol = vitale("lunar")
    person = VitaleSession(protocol).read().beneficiaries[0]
    assert person.birth_date == "19550000" and person.lunar_birth_date
    assert person.ins_c is not None  # date digits still feed the INS-C seed


def test_temporary_number_has_no_ins_c_and_the_nia_oid(vitale) -> None:
    _card, protocol = vitale("temporary")
    person = VitaleSession(protocol).read().beneficiaries[0]
    assert person.nir.temporary and person.ins_c is None
    assert person.ins.oid is InsAuthority.NIA and person.ins.kind == "NIA"


def test_read_counts_apdus(vitale) -> None:
    _card, protocol = vitale("family")
    VitaleSession(protocol).read()
    assert protocol.apdu_count == 18  # select/read public, insured, rights, 4 records + end
