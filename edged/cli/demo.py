"""`bifente demo`: the front-desk scenario on simulated hardware, printed for a person."""

from __future__ import annotations

import argparse
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from apdu.cps import CpsSession, PinRequest
from apdu.cps_spec import KeyRef
from apdu.pcsc import PcscTransport
from apdu.protocol import CardProtocol
from apdu.vitale import VitaleSession
from edged.cli.render import cps_text, situations_text, vitale_text
from edged.readers.pcsc import scan

__all__ = ["add_parsers"]


def _step(n: int, total: int, text: str) -> None:
    print(f"\n[{n}/{total}] {text}", flush=True)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _demo(args: argparse.Namespace) -> int:
    from simulators.pki import ca_certificate  # the demo wires the simulators in
    from simulators.slots import CPS_SLOT, VITALE_SLOT, SimulatedSlots

    total = 6
    print("bifente demo: a front desk with a dual-slot reader, on simulated hardware")
    print("(simulated CPS and Vitale cards, reached through the real PC/SC stack: "
          "pyscard -> pcscd -> vpcd)")
    _step(1, total, f"Start PC/SC and insert the cards: CPS profile {args.cps!r} in slot 0, "
          f"Vitale profile {args.vitale!r} in slot 1")
    started = time.monotonic()
    with SimulatedSlots(args.cps, args.vitale) as slots:
        how = "started" if slots.pcscd and slots.pcscd.started_here else "already running"
        print(f"    pcscd {how}; cards seen by PC/SC in {time.monotonic() - started:.2f} s")
        _step(2, total, "Readers")
        for v in scan():
            print(f"    {v.index}: {v.reader:<20} {v.kind}")

        _step(3, total, "The receptionist reads the patient's Vitale card")
        with PcscTransport(slots.reader(VITALE_SLOT)) as transport:
            protocol = CardProtocol(transport)
            t = time.monotonic()
            card = VitaleSession(protocol).read()
            print(_indent(vitale_text(card)))
            print(f"    ({protocol.apdu_count} APDUs, {1000 * (time.monotonic() - t):.1f} ms)")

        _step(4, total, "The doctor's CPS card: identity and PIN status (no PIN needed)")
        with PcscTransport(slots.reader(CPS_SLOT)) as transport:
            session = CpsSession(CardProtocol(transport))
            identity, pin = session.identity(), session.pin_status()
            print(_indent(cps_text(identity, pin)))
            if pin.blocked:
                print("    The PIN is blocked: the demo stops here (unblock it with the PUK).")
                return 0

            _step(5, total, "The doctor types the PIN on the keypad (simulated keypad; the PIN "
                  "never travels over the network)")

            def keypad(request: PinRequest) -> bytearray:
                print(f"    keypad: enter PIN ({request.tries_left} tries left) -> ****")
                return bytearray(b"1234")

            session.verify_pin(keypad)
            print("    PIN correct. Practice situations, readable now:")
            print(_indent(situations_text(session.situations())))

            _step(6, total, "The doctor signs a consultation report with the CPS card")
            report = (f"Consultation report for {card.beneficiaries[0].first_name} "
                      f"{card.beneficiaries[0].name}, {time.strftime('%Y-%m-%d')}").encode()
            t = time.monotonic()
            signature = session.sign(report)
            elapsed = time.monotonic() - t
            cert = session.certificate(KeyRef.SIGNATURE)
            cert.public_key().verify(signature, report, padding.PKCS1v15(), hashes.SHA256())
            issuer = ca_certificate("personnes")
            issuer.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                       padding.PKCS1v15(), hashes.SHA256())
            print(f"    RSA-2048 SHA-256 signature made on the card in {1000 * elapsed:.1f} ms"
                  " (split hash: PSO HASH + PSO CDS)")
            print(f"    verified with the card's certificate: {_cn(cert)}")
            print(f"    issued by {_cn(issuer)} (the test IGC-Santé hierarchy)")
    print("\nDone: cards removed, PC/SC left as found.")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `bifente demo`."""
    p = sub.add_parser("demo", help="run the front-desk scenario on simulated hardware")
    p.add_argument("--cps", default="gp", help="CPS profile (default gp)")
    p.add_argument("--vitale", default="family", help="Vitale profile (default family)")
    p.set_defaults(func=_demo)
