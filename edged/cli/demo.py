"""`bifente demo`: the front desk on simulated hardware, end to end, printed for a person.

`edged --simulate` runs as its own process (the firmware runs on the MicroPython unix port
in the virtual terminal, the simulated cards in its slots); this script is the clinic
software: it finds the terminal by mDNS, pairs (the code is read off the virtual display),
reads the Vitale card, has the doctor type the PIN on the virtual keypad, signs, asks the
patient's consent on the terminal, and watches card events.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bifente.edged.cli.render import date_text

__all__ = ["add_parsers"]

STEPS = 9


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/{STEPS}] {text}", flush=True)


def _say(text: str) -> None:
    print(f"    {text}", flush=True)


def _screen(lines: list[str]) -> str:
    width = max([16, *map(len, lines)])
    body = "\n".join(f"    | {line:<{width}} |" for line in lines)
    return f"    +{'-' * (width + 2)}+\n{body}\n    +{'-' * (width + 2)}+"


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def _wait_screen(control: Any, pattern: str, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines: list[str] = await asyncio.to_thread(control.screen)
        if re.search(pattern, "\n".join(lines)):
            return lines
        if time.monotonic() > deadline:
            raise TimeoutError(f"the terminal never showed {pattern!r}: {lines}")
        await asyncio.sleep(0.1)


async def _scenario(port: int, fingerprint: str, control_address: str, name: str) -> None:
    from bifente.client import pair
    from bifente.edged.discovery import browse
    from bifente.simulators.terminal.control import TerminalControl

    control = TerminalControl(control_address)

    _step(2, "The clinic software looks for terminals on the network (mDNS _bifente._tcp)")
    terminal = None
    for _ in range(10):
        found = await browse(1.5, interfaces=["127.0.0.1"])
        terminal = next((t for t in found if t.name == name), None)
        if terminal:
            break
    if terminal is None:
        raise RuntimeError("the terminal did not appear on mDNS")
    _say(f"found {terminal.name} at {terminal.addresses[0]}:{terminal.port}")
    _say(f"capabilities {', '.join(terminal.capabilities)}; certificate to pin:")
    _say(f"sha256:{terminal.fingerprint}")

    _step(3, "Pairing: the terminal shows a code, the receptionist types it into the software")

    async def read_code() -> str:
        lines = await _wait_screen(control, r"\d{6}")
        print(_screen(lines))
        code = re.search(r"(\d{6})", "\n".join(lines)).group(1)  # type: ignore[union-attr]
        _say(f"receptionist types {code}")
        return code

    credentials = await pair(terminal.addresses[0], terminal.port, terminal.fingerprint,
                             "Front desk PC", ["identity:read", "cps:sign", "dmp:read"],
                             read_code)
    _say(f"paired; scopes {', '.join(credentials.scopes)}; from now on mutual TLS")

    async with await credentials.connect() as client:
        await client.subscribe()
        _step(4, "The receptionist reads the patient's Vitale card")
        t = time.monotonic()
        card = await client.call("vitale.read")
        _say(f"({1000 * (time.monotonic() - t):.0f} ms through the terminal)")
        for i, b in enumerate(card["beneficiaries"], 1):
            _say(f"{i}. {b['first_name']} {b['name']} ({b['quality_name']}), born "
                 f"{date_text(b['birth_date'])}")
            _say(f"   INS {b['ins']['value']} (OID {b['ins']['oid']}), INS-C "
                 f"{b['ins_c'] or 'none'}")

        _step(5, "The doctor's CPS card")
        info = await client.call("cps.info")
        _say(f"{info['display_name']}, {info['card_type_name']}, profession "
             f"{info['profession']}, specialty {info['specialty'] or '-'}")
        _say(f"PIN: {info['pin']['tries_left']} of {info['pin']['max_tries']} tries left")

        _step(6, "The doctor types the PIN on the terminal keypad (it never reaches the PC)")
        verify = asyncio.ensure_future(client.call("cps.verify_pin"))
        print(_screen(await _wait_screen(control, r"PIN")))
        await asyncio.to_thread(control.press, "1", "2", "3", "4")
        print(_screen(await _wait_screen(control, r"\*\*\*\*")))
        await asyncio.to_thread(control.press, "OK")
        result = await verify
        _say(f"the software only learns the outcome: {result}")

        _step(7, "The doctor signs a consultation report with the CPS card")
        report = f"Consultation report, {card['beneficiaries'][0]['first_name']} " \
                 f"{card['beneficiaries'][0]['name']}, {time.strftime('%Y-%m-%d')}".encode()
        signing = asyncio.ensure_future(client.call("cps.sign", {
            "data": base64.b64encode(report).decode(), "title": "Compte rendu"}))
        print(_screen(await _wait_screen(control, r"Signer")))  # who asks, what, the digest
        await asyncio.to_thread(control.press, "OK")
        signed = await signing
        cert = x509.load_der_x509_certificate(base64.b64decode(signed["certificate"]))
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):  # the CPS signature key is RSA
            raise DemoError(f"the card's signature key is {type(key).__name__}, not RSA")
        key.verify(base64.b64decode(signed["signature"]), report, padding.PKCS1v15(),
                   hashes.SHA256())
        _say(f"signature verified with the card's certificate {_cn(cert)}")
        _say(f"issued by {cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value!s}")

        _step(8, "The patient is asked, on the terminal, to let the doctor read the DMP")
        asked = asyncio.ensure_future(client.call("consent.ask", {
            "text": f"Autoriser {info['display_name']} à consulter votre DMP ?"}))
        print(_screen(await _wait_screen(control, r"DMP")))
        await asyncio.to_thread(control.press, "OK")
        _say(f"patient's answer: {(await asked)['answer']}")

        _step(9, "The patient takes the Vitale card back; the software sees it at once")
        await asyncio.to_thread(control.remove, 1)
        while True:
            event = await client.next_event(15)
            if event["event"] == "card.removed":
                _say(f"event {event['event']}: {event['kind']} card left {event['slot']}")
                break


class DemoError(RuntimeError):
    """The demo cannot go on; the message is for the user."""


def _demo(args: argparse.Namespace) -> int:
    from bifente.simulators.profiles import load_cps, load_vitale

    load_cps(args.cps)  # ProfileError (one line, exit 2) before anything starts
    load_vitale(args.vitale)
    print("bifente demo: a front desk with the dual-slot terminal, on simulated hardware")
    print("(the terminal firmware runs on MicroPython; edged talks to it over a serial line)")
    _step(1, f"Start edged --simulate: CPS profile {args.cps!r}, Vitale profile "
          f"{args.vitale!r}")
    name = f"bifente-demo-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bifente-demo-") as tmp:
        config = Path(tmp) / "edged.toml"
        config.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\n[state]\n'
                          f'state_dir = "{tmp}/state"\nstate_key_file = "{tmp}/key/state.key"\n'
                          f'[discovery]\nname = "{name}"\n'
                          f'mdns_interfaces = ["127.0.0.1"]\n[log]\nlog_level = "warning"\n')
        started = time.monotonic()
        daemon = subprocess.Popen([sys.executable, "-m", "bifente.edged", "--simulate", "--config",
                                   str(config), "--cps", args.cps, "--vitale", args.vitale],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            control = port = fingerprint = None
            while port is None:
                line = daemon.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    lines = (daemon.stderr.read() or "").strip().splitlines()  # type: ignore[union-attr]
                    raise DemoError("edged stopped: " + (lines[-1] if lines else "no output"))
                if m := re.search(r"control (\S+)", line):
                    control = m.group(1)
                if m := re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})", line):
                    port, fingerprint = int(m.group(1)), m.group(2)
            _say(f"edged listening on port {port} after {time.monotonic() - started:.1f} s")
            if control is None or fingerprint is None:
                raise RuntimeError("edged did not report the virtual terminal's control address")
            asyncio.run(_scenario(port, fingerprint, control, name))
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        state = Path(tmp) / "state"
        from bifente.edged.state.audit import AuditLog, read_anchor_key
        from bifente.edged.state.keywrap import load_key_wrapper

        # The anchor key is sealed with the state key (the fallback key file, here).
        wrapper = load_key_wrapper(state, f"{tmp}/key/state.key", create=False)
        with AuditLog(state / "audit.db", readonly=True,
                      anchor_key=read_anchor_key(state / "audit.key", wrapper)) as log:
            report = log.verify()
            events = [r.event for r in log.records()]
    print(f"\nedged stopped (mDNS goodbye sent, cards powered down). Audit trail: "
          f"{report.records} records, chain {'valid' if report.ok else 'BROKEN'}:")
    print("    " + ", ".join(events))
    return 0 if report.ok else 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bifente demo`."""
    p = sub.add_parser("demo", help="run the front-desk scenario on simulated hardware")
    p.add_argument("--cps", default="gp", help="CPS profile (default gp)")
    p.add_argument("--vitale", default="family", help="Vitale profile (default family)")
    p.set_defaults(func=_demo)
