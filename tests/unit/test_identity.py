"""Patient identifiers: NIR keys (Corsica, temporary), INS-C seeds built by hand, INS OIDs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifente.apdu.identity import (
    Ins,
    InsAuthority,
    Nir,
    compute_ins_c,
    ins_for,
    mask_nir,
    nir_key,
    normalise_first_name,
    parse_nir,
)

# Keys written out by hand: 97 - (N mod 97) on the 13 digits (docs/cards.md).
PARIS = "1800175115001"  # man born January 1980 in Paris (75)
PARIS_NIR = PARIS + f"{97 - 1800175115001 % 97:02d}"
# Corsica: 2A is read as 19 and 2B as 18 before taking the remainder.
AJACCIO = "185052A004012"
AJACCIO_NIR = AJACCIO + f"{97 - 1850519004012 % 97:02d}"
BASTIA = "278022B011034"
BASTIA_NIR = BASTIA + f"{97 - 2780218011034 % 97:02d}"
TEMPORARY = "8900799123456"
TEMPORARY_NIR = TEMPORARY + f"{97 - 8900799123456 % 97:02d}"
TEMPORARY_F = "7900799123456"
TEMPORARY_F_NIR = TEMPORARY_F + f"{97 - 7900799123456 % 97:02d}"


def test_hand_keys_match_the_profiles() -> None:
    # The simulator's Corsica and temporary profiles carry these very numbers.
    assert BASTIA_NIR == "278022B01103413"
    assert TEMPORARY_NIR == "890079912345626"


@pytest.mark.parametrize("nir", [PARIS_NIR, AJACCIO_NIR, BASTIA_NIR, TEMPORARY_NIR,
                                 TEMPORARY_F_NIR, "178027505601209", "172062A00401244"])
def test_valid_nirs_parse(nir: str) -> None:
    parsed = parse_nir(nir)
    assert parsed.value == nir
    assert parsed.body == nir[:13]
    assert parsed.key == int(nir[13:])
    assert nir_key(nir[:13]) == int(nir[13:])


def test_corsica_substitution() -> None:
    assert nir_key(AJACCIO) == 97 - 1850519004012 % 97
    assert nir_key(BASTIA) == 97 - 2780218011034 % 97
    # Reading 2A as 20/00 or 2B as 19 would give other keys: the substitution matters.
    assert nir_key(AJACCIO) != 97 - 1850520004012 % 97
    assert nir_key(BASTIA) != 97 - 2780219011034 % 97
    assert parse_nir(AJACCIO_NIR).department == "2A"
    assert parse_nir(BASTIA_NIR.lower()).department == "2B"  # upper-cased on the way in


def test_sex_and_temporary() -> None:
    assert (parse_nir(PARIS_NIR).sex, parse_nir(PARIS_NIR).temporary) == ("M", False)
    assert (parse_nir(BASTIA_NIR).sex, parse_nir(BASTIA_NIR).temporary) == ("F", False)
    assert (parse_nir(TEMPORARY_NIR).sex, parse_nir(TEMPORARY_NIR).temporary) == ("F", True)
    assert (parse_nir(TEMPORARY_F_NIR).sex, parse_nir(TEMPORARY_F_NIR).temporary) == ("M", True)


@pytest.mark.parametrize("nir", [PARIS_NIR, AJACCIO_NIR, TEMPORARY_NIR])
def test_wrong_key_is_refused(nir: str) -> None:
    wrong = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
    with pytest.raises(ValueError, match="key does not match") as info:
        parse_nir(wrong)
    assert wrong not in str(info.value) and wrong[:13] not in str(info.value)


@pytest.mark.parametrize("month", ["00", "13", "19", "43", "49"])
def test_bad_month(month: str) -> None:
    body = "180" + month + "75115001"
    nir = body + f"{97 - int(body) % 97:02d}"  # a correct key: only the month is wrong
    with pytest.raises(ValueError, match=f"month {month}") as info:
        parse_nir(nir)
    assert nir not in str(info.value)


@pytest.mark.parametrize("month", ["01", "12", "20", "42", "50", "99"])
def test_month_codes_accepted(month: str) -> None:
    body = "180" + month + "75115001"
    assert parse_nir(body + f"{97 - int(body) % 97:02d}").body == body


def test_department_00_refused() -> None:
    body = "1800100115001"
    nir = body + f"{97 - int(body) % 97:02d}"
    with pytest.raises(ValueError, match="department 00") as info:
        parse_nir(nir)
    assert nir not in str(info.value)


@pytest.mark.parametrize("text", ["", "18001751150", "3800175115001" + "42", "1800175115001423",
                                  "180017511500A42", "180012C115001" + "42", "x" * 15])
def test_wrong_shape_refused(text: str) -> None:
    with pytest.raises(ValueError, match="15 characters") as info:
        parse_nir(text)
    if text:
        assert text not in str(info.value)


def test_thirteen_characters() -> None:
    with pytest.raises(ValueError, match="key missing") as info:
        parse_nir(PARIS)
    assert PARIS not in str(info.value)
    assert parse_nir(PARIS, key_required=False).value == PARIS_NIR
    assert parse_nir(AJACCIO, key_required=False).value == AJACCIO_NIR
    # A full NIR is still checked when the key is optional.
    with pytest.raises(ValueError, match="key does not match"):
        parse_nir(PARIS + f"{int(PARIS_NIR[13:]) % 97 + 1:02d}", key_required=False)


@pytest.mark.parametrize("spaced", [
    "1 80 01 75 115 001 " + PARIS_NIR[13:],
    "  1 80 01 75 115 001 " + PARIS_NIR[13:] + "\t",
    "1.80.01.75.115.001." + PARIS_NIR[13:],
    "1-80-01-75-115-001-" + PARIS_NIR[13:],
])
def test_spaces_allowed(spaced: str) -> None:
    assert parse_nir(spaced).value == PARIS_NIR


def test_formatted_round_trips() -> None:
    nir = parse_nir(AJACCIO_NIR)
    assert nir.formatted() == f"1 85 05 2A 004 012 {AJACCIO_NIR[13:]}"
    assert parse_nir(nir.formatted()) == nir


def test_errors_never_echo_the_nir() -> None:
    cases = [PARIS_NIR[:13] + "00", "1801375115001" + "42", "1800100115001" + "42", PARIS]
    for text in cases:
        with pytest.raises(ValueError) as info:
            parse_nir(text)
        message = str(info.value)
        assert text not in message and text[:13] not in message and text[3:13] not in message
    with pytest.raises(ValueError) as info:
        nir_key("18001751150X1")
    assert "18001751150X1" not in str(info.value)
    assert str(info.value).endswith("180**********")


def test_mask_and_repr_hide_the_nir() -> None:
    nir = parse_nir(AJACCIO_NIR)
    assert mask_nir(AJACCIO_NIR) == "185" + "*" * 12
    assert mask_nir("") == ""
    for shown in (repr(nir), str(nir), repr(ins_for(nir)), repr(ins_for(nir, environment="test"))):
        assert AJACCIO_NIR not in shown
        assert AJACCIO_NIR[3:13] not in shown
    assert "185" in repr(nir)


# -- INS-C ------------------------------------------------------------------------------------
def ins_c_from_seed(seed: bytes) -> str:
    """The rest of the INS-C recipe, spelled out: SHA-256, 16 hex digits, 20 decimal digits."""
    n = int(hashlib.sha256(seed).hexdigest()[:16], 16)
    return f"{n:020d}{97 - n % 97:02d}"


def test_ins_c_seed_by_hand() -> None:
    nir = parse_nir(PARIS_NIR)
    seed = b"JEANPIERRE" + b"800105" + PARIS.encode()
    assert len(seed) == 29
    assert compute_ins_c("Jean-Pierre", "19800105", nir) == ins_c_from_seed(seed)


@pytest.mark.parametrize(("first_name", "birth_date", "seed_head"), [
    ("Jean-Pierre", "19800105", "JEANPIERRE800105"),
    ("Émma", "20140318", "EMMA      140318"),
    ("émma", "20140318", "EMMA      140318"),
    ("Marie-Christine", "19651231", "MARIECHRIS651231"),
    ("Anne Sophie", "19800105", "ANNESOPHIE800105"),
    ("D'Artagnan", "19800105", "DARTAGNAN 800105"),
    ("Zoë", "20010203", "ZOE       010203"),
    ("Ahmed", "19550000", "AHMED     550000"),  # lunar date: digits kept as they are
    ("Ahmed", "19553512", "AHMED     553512"),
    ("Ahmed", None, "AHMED     000000"),
    ("Ahmed", "", "AHMED     000000"),
])
def test_ins_c_seeds(first_name: str, birth_date: str | None, seed_head: str) -> None:
    assert len(seed_head) == 16
    seed = (seed_head + PARIS).encode("ascii")
    ins_c = compute_ins_c(first_name, birth_date, parse_nir(PARIS_NIR))
    assert ins_c == ins_c_from_seed(seed)


def test_ins_c_shape_and_key() -> None:
    for nir in (PARIS_NIR, AJACCIO_NIR, BASTIA_NIR):
        ins_c = compute_ins_c("Claire", "19800105", parse_nir(nir))
        assert len(ins_c) == 22 and ins_c.isdigit()
        n = int(ins_c[:20])
        assert n < 16 ** 16
        assert int(ins_c[20:]) == 97 - n % 97


def test_ins_c_depends_on_each_part_of_the_seed() -> None:
    nir = parse_nir(PARIS_NIR)
    base = compute_ins_c("Claire", "19800105", nir)
    assert base != compute_ins_c("Clair", "19800105", nir)
    assert base != compute_ins_c("Claire", "19800106", nir)
    assert base == compute_ins_c("Claire", "20800105", nir)  # the century is not in the seed
    assert base != compute_ins_c("Claire", "19800105", parse_nir(AJACCIO_NIR))


def test_ins_c_refuses_temporary_and_bad_dates() -> None:
    with pytest.raises(ValueError, match="temporary"):
        compute_ins_c("Ana", "19900721", parse_nir(TEMPORARY_NIR))
    with pytest.raises(ValueError, match="temporary"):
        compute_ins_c("Ana", None, parse_nir(TEMPORARY_F_NIR))
    for bad in ("1990072", "199007211", "1990-07-21", "abcdefgh"):
        with pytest.raises(ValueError, match="YYYYMMDD"):
            compute_ins_c("Ana", bad, parse_nir(PARIS_NIR))


@given(st.text(max_size=40))
def test_first_name_normalisation_is_ascii_capitals(first_name: str) -> None:
    name = normalise_first_name(first_name)
    assert name == "" or (name.isascii() and name.isalpha() and name.isupper())
    ins_c = compute_ins_c(first_name, None, parse_nir(PARIS_NIR))
    assert len(ins_c) == 22 and int(ins_c[20:]) == 97 - int(ins_c[:20]) % 97


# -- INS --------------------------------------------------------------------------------------
def test_ins_oids() -> None:
    nir = parse_nir(PARIS_NIR)
    assert ins_for(nir).oid == InsAuthority.NIR == "1.2.250.1.213.1.4.8"
    assert ins_for(nir, environment="production").oid == "1.2.250.1.213.1.4.8"
    assert ins_for(nir, environment="test").oid == "1.2.250.1.213.1.4.10"
    assert ins_for(nir, environment="demo").oid == "1.2.250.1.213.1.4.11"
    for env in ("production", "test", "demo"):
        ins = ins_for(nir, environment=env)
        assert (ins.kind, ins.value, ins.nir) == ("NIR", PARIS_NIR, nir)
    with pytest.raises(ValueError, match="environment"):
        ins_for(nir, environment="staging")


@pytest.mark.parametrize("env", ["production", "test", "demo"])
def test_temporary_number_is_a_nia(env: str) -> None:
    ins = ins_for(parse_nir(TEMPORARY_NIR), environment=env)
    assert ins.oid == InsAuthority.NIA == "1.2.250.1.213.1.4.9"
    assert ins.kind == "NIA"
    assert ins == Ins(Nir(TEMPORARY_NIR), InsAuthority.NIA)


# -- property: any well-formed body round-trips -------------------------------------------------
MONTHS = [f"{m:02d}" for m in (*range(1, 13), *range(20, 43), *range(50, 100))]
DEPARTMENTS = [f"{d:02d}" for d in range(1, 100)] + ["2A", "2B"]


@given(sex=st.sampled_from("1278"), year=st.integers(0, 99), month=st.sampled_from(MONTHS),
       dept=st.sampled_from(DEPARTMENTS), commune=st.integers(0, 999), order=st.integers(0, 999))
def test_any_body_round_trips(sex: str, year: int, month: str, dept: str, commune: int,
                              order: int) -> None:
    body = f"{sex}{year:02d}{month}{dept}{commune:03d}{order:03d}"
    nir = parse_nir(body, key_required=False)
    assert nir.body == body and len(nir.value) == 15
    # The key verifies independently: N + key is a multiple of 97, 1 <= key <= 97.
    n = int(body[:5] + {"2A": "19", "2B": "18"}.get(dept, dept) + body[7:])
    assert (n + nir.key) % 97 == 0 and 1 <= nir.key <= 97
    assert parse_nir(nir.value) == nir
    assert parse_nir(nir.formatted()) == nir
    assert nir.temporary == (sex in "78")


def test_non_ascii_decimal_digits_are_not_a_nir() -> None:
    # "\d" matched Arabic-Indic digits, and int() read them: a valid, non-ASCII Nir came out.
    valid = "180017511500176"

    def shifted(text: str, zero: int) -> str:  # the same digits from another script
        return "".join(chr(zero + int(c)) for c in text)

    assert parse_nir(valid).value == valid
    for fake in ("1" + shifted(valid[1:], 0x0660), valid[:5] + shifted("75", 0x06F0)
                 + valid[7:], shifted(valid, 0xFF10)):
        with pytest.raises(ValueError):
            parse_nir(fake)
