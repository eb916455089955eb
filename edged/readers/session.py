"""The session of one card insertion: opened once by the slot's arbiter, dropped on removal.

A card cannot change its PKCS#15 directories, its certificates, its holder's identity or (for
a Vitale card) its contents while it stays inserted through us: these are read once per
insertion. What can change is never cached: the PIN counters and the security state.

A CPS card's verified PIN belongs to the client context it was typed for (the Konnektor model,
docs/security.md): `claim(client)` before anything that needs the PIN resets the card's
verification status when another client holds it, so the card asks this client for its own
PIN on the keypad.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from bifente.apdu.command import CommandApdu
from bifente.apdu.cps import CpsIdentity, CpsSession
from bifente.apdu.cps_spec import CPS_AID, KeyRef, PinRef
from bifente.apdu.ins import INS
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.vitale import VitaleCard, VitaleSession
from bifente.edged.readers.pcsc import CardKind

__all__ = ["InsertedCps", "InsertedVitale", "open_session"]


class InsertedCps(CpsSession):
    """A CPS card for one insertion: identity and certificates read once."""

    def __init__(self, protocol: CardProtocol) -> None:
        super().__init__(protocol)
        self._identity: CpsIdentity | None = None
        self._certificates: dict[int, x509.Certificate] = {}
        # The client context whose PIN the card may hold verified (None: nobody's, as after
        # power-on or a reset). Set before the PIN is typed, so that any doubt resets.
        self.verified_for: str | None = None

    def claim(self, client: str) -> None:
        """From now on the card works for this client: another client's PIN state is reset."""
        if self.verified_for is not None and self.verified_for != client:
            self.reset_verification()

    def reset_verification(self) -> None:
        """VERIFY with P1 = FF: the PIN is no longer verified (ISO 7816-4 §11.5.6)."""
        self.protocol.select_aid(CPS_AID)
        self.protocol.transceive(CommandApdu(0x00, INS.VERIFY, 0xFF, PinRef.PIN))
        self.verified_for = None

    def verify_for(self, client: str, *, timeout: float) -> None:
        """The PIN typed on the keypad for this client; it alone may use it afterwards."""
        self.claim(client)
        self.verified_for = client
        self.verify_pin(None, timeout=timeout)

    def identity(self) -> CpsIdentity:
        """The holder's public identity (read on first use)."""
        if self._identity is None:
            self._identity = super().identity()
        return self._identity

    def certificate(self, key: KeyRef) -> x509.Certificate:
        """The certificate of a key (read on first use: seconds on a slow serial line)."""
        if key not in self._certificates:
            self._certificates[key] = super().certificate(key)
        return self._certificates[key]


class InsertedVitale(VitaleSession):
    """A Vitale card for one insertion: read once (its files are read-only for us)."""

    def __init__(self, protocol: CardProtocol) -> None:
        super().__init__(protocol)
        self._card: VitaleCard | None = None

    def read(self) -> VitaleCard:
        """The card's contents (read on first use)."""
        if self._card is None:
            self._card = super().read()
        return self._card


def open_session(kind: CardKind, protocol: CardProtocol) -> Any:
    """The session for a card of this kind (the bare protocol for a card we do not know)."""
    if kind is CardKind.CPS:
        return InsertedCps(protocol)
    if kind in (CardKind.VITALE, CardKind.VITALE1):  # Vitale 1: UnexpectedCard, said once
        return InsertedVitale(protocol)
    return protocol
