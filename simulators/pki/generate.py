"""Generate the missing parts of the test PKI (run once; outputs are committed as test data).

    python -m bifente.simulators.pki.generate            # create what is missing, keep the rest
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bifente.simulators.pki import DATA, load_key
from bifente.simulators.profiles import CpsProfile, available, load_cps

UTC = dt.UTC
TEST_ORG = "BIFENTE TEST PKI - NOT FOR PRODUCTION"
CA_NAMES = {
    "root": "TEST AC RACINE IGC-SANTE FORT",
    "personnes": "TEST AC IGC-SANTE FORT PERSONNES",
    "organisations": "TEST AC IGC-SANTE FORT ORGANISATIONS",
}
CA_VALIDITY = (dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2049, 12, 31, tzinfo=UTC))
CARD_VALIDITY = {
    "valid": (dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2039, 12, 31, tzinfo=UTC)),
    "expired": (dt.datetime(2019, 1, 1, tzinfo=UTC), dt.datetime(2022, 1, 1, tzinfo=UTC)),
}


def _new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write(path: Path, key: RSAPrivateKey, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path.with_suffix(".key.pem").write_bytes(key_pem)
    path.with_suffix(".crt.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca_name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IGC-SANTE TEST"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _load_ca(name: str) -> tuple[RSAPrivateKey, x509.Certificate]:
    base = DATA / "ca" / f"test-{name}"
    cert = x509.load_pem_x509_certificate(base.with_suffix(".crt.pem").read_bytes())
    return load_key(base.with_suffix(".key.pem")), cert


def make_cas() -> None:
    """Create the root and the two intermediate CAs unless they exist."""
    root_base = DATA / "ca" / "test-root"
    if not root_base.with_suffix(".crt.pem").exists():
        key = _new_key()
        name = _ca_name(CA_NAMES["root"])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(CA_VALIDITY[0]).not_valid_after(CA_VALIDITY[1])
                .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                .add_extension(_ca_usage(), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        _write(root_base, key, cert)
    root_key, root_cert = _load_ca("root")
    for sub in ("personnes", "organisations"):
        base = DATA / "ca" / f"test-{sub}"
        if base.with_suffix(".crt.pem").exists():
            continue
        key = _new_key()
        cert = (x509.CertificateBuilder().subject_name(_ca_name(CA_NAMES[sub]))
                .issuer_name(root_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(CA_VALIDITY[0]).not_valid_after(CA_VALIDITY[1])
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_ca_usage(), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(_aki(root_cert), critical=False)
                .sign(root_key, hashes.SHA256()))
        _write(base, key, cert)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _card_subject(p: CpsProfile) -> x509.Name:
    h = p.holder
    situation = p.situations[0] if p.situations else None
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]
    if situation:
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, situation.structure_name),
                  x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, situation.structure_id)]
    attrs += [
        x509.NameAttribute(NameOID.TITLE, h.profession),
        x509.NameAttribute(NameOID.SURNAME, h.name),
        x509.NameAttribute(NameOID.GIVEN_NAME, h.first_name),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, h.national_id),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{h.national_id}/{h.first_name} {h.name}"),
    ]
    return x509.Name(attrs)


def make_card(profile: CpsProfile) -> bool:
    """Create the signature and authentication certificates of a CPS profile if missing."""
    folder = DATA / "cps" / profile.name
    if (folder / "aut.crt.pem").exists() and (folder / "sig.crt.pem").exists():
        return False
    ca_key, ca_cert = _load_ca("personnes")
    start, end = CARD_VALIDITY[profile.certificates]
    for kind in ("sig", "aut"):
        key = _new_key()
        builder = (x509.CertificateBuilder().subject_name(_card_subject(profile))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False)
                   .add_extension(_aki(ca_cert), critical=False))
        if profile.email:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(profile.email)]), critical=False)
        if kind == "sig":  # CPS_PRIV_SIG: non-repudiation (docs/cards.md)
            usage = x509.KeyUsage(False, True, False, False, False, False, False, False, False)
            eku = [ExtendedKeyUsageOID.EMAIL_PROTECTION]
        else:  # CPS_PRIV_AUT: signature + decryption (docs/cards.md)
            usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
            eku = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        _write(folder / kind, key, builder.sign(ca_key, hashes.SHA256()))
    return True


def main(argv: list[str] | None = None) -> int:
    """Create every missing CA, card key and certificate."""
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    make_cas()
    made = [name for name in available("cps") if make_card(load_cps(name))]
    (DATA / "README.md").write_text(
        "# TEST PKI - NOT FOR PRODUCTION\n\nEvery private key in this folder is public test "
        "data. Generated by `python -m bifente.simulators.pki.generate`; "
        "kept so that the simulated\n"
        "cards are the same everywhere. Never trust these CAs outside tests.\n")
    print(f"test PKI in {DATA.name}/: created keys for {', '.join(made) or 'nothing new'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
