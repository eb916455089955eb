"""Keys, trust and real S/MIME messages of the test PKI, for the CMS and S/MIME harnesses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import cache

from edged.services import cms, smime
from simulators.pki import ca_certificate, card_keys

SENDER = "claire.martin@cabinet.test"  # the gp profile's address, in its certificates
AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)  # inside the test certificates' validity


class MemoDecryptor(cms.SoftwareDecryptor):
    """The card's decryption, remembered per wrapped key: mutants of the content path reach
    the content decryption at full speed instead of paying an RSA operation each time."""

    def __init__(self) -> None:
        keys = card_keys("gp")
        super().__init__(keys.authentication_key, keys.authentication_cert)
        self._memo: dict[tuple[bytes, bool], bytes] = {}

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """RSA unwrap, memoised (bounded)."""
        key = (encrypted_key, oaep)
        if key not in self._memo:
            if len(self._memo) > 256:
                self._memo.clear()
            self._memo[key] = super().decrypt(encrypted_key, oaep=oaep)
        return self._memo[key]


@cache
def trust() -> cms.TrustStore:
    """The test IGC-Santé root, as edged trusts it."""
    return cms.TrustStore([ca_certificate("root")])


def signer() -> cms.SoftwareSigner:
    """The gp card's signature key, with the intermediate CA carried in each signature."""
    keys = card_keys("gp")
    return cms.SoftwareSigner(keys.signature_key, keys.signature_cert,
                              [ca_certificate("personnes")],
                              encryption_certificate=keys.authentication_cert)


def messages() -> Iterator[bytes]:
    """Clear, signed-only (both forms), signed+encrypted (GCM and CBC) messages."""
    attachment = smime.Attachment("cr.pdf", "application/pdf", b"%PDF-1.4\n%%EOF\n")
    plain = smime.build_message(SENDER, ["bob@clinique.test"], subject="Résultats",
                                text="Bonjour,\nvoici le compte rendu.", html="<p>Bonjour</p>",
                                attachments=[attachment], message_id="<1.2@cabinet.test>",
                                date=AT)
    yield smime.to_bytes(plain)
    yield smime.to_bytes(smime.sign_message(plain, signer()))
    yield smime.to_bytes(smime.sign_message(plain, signer(), hp="cipher"))
    for mode in ("gcm", "cbc"):
        yield smime.to_bytes(smime.protect(plain, signer(), [], mode))  # type: ignore[arg-type]


def cms_blobs() -> Iterator[bytes]:
    """DER SignedData (embedded and detached) and EnvelopedData/AuthEnvelopedData."""
    keys = card_keys("gp")
    yield cms.sign(b"content", signer(), detached=False)
    yield cms.sign(b"content", signer(), detached=True)
    for mode in ("gcm", "cbc"):
        yield cms.encrypt(b"content", [keys.authentication_cert], mode=mode)  # type: ignore[arg-type]
