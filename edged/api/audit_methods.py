"""The audit methods: a signed checkpoint for admin clients to keep off the device."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bifente.edged.api.method import INT, STR, Method, obj
from bifente.edged.state.checkpoint import make_checkpoint

if TYPE_CHECKING:
    from bifente.edged.api.context import ApiContext, Caller

__all__ = ["METHODS", "audit_checkpoint"]


async def audit_checkpoint(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """audit.checkpoint: (seq, head hash) now, signed by the device (docs/audit.md)."""
    seq, digest = await asyncio.to_thread(daemon.audit.head)
    checkpoint = make_checkpoint(seq, digest, sign=daemon.keystore.sign_with_device_key,
                                 certificate_pem=daemon.keystore.ca_certificate_pem)
    daemon.audit_event("audit.checkpoint", conn, seq=seq, hash=digest)
    return checkpoint


METHODS = [
    Method("audit.checkpoint", audit_checkpoint,
           "A checkpoint of the audit log (sequence number and head hash) signed by the "
           "device; keep it off the terminal and check the log against it with "
           "`bifente audit verify --checkpoint FILE`.", frozenset({"admin"}), obj({}),
           obj({"v": INT, "seq": INT, "hash": STR, "issued": INT, "device": STR,
                "signature": STR, "certificate": STR},
               ("v", "seq", "hash", "issued", "device", "signature", "certificate"))),
]
