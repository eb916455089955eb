"""Review M6 and M7 against the real daemon: the audit trail under attack.

M6: unpaired peers flooding refusals cannot flood the log, and appends stay off the loop.
M7: records appended without the daemon are refused, never re-anchored; a signed checkpoint
kept off the device catches what root on the Pi can still do (cut the tail, forge past it).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest
import websockets

from bifente.client import Client, RemoteError
from bifente.client.client import _context
from bifente.edged.cli.main import main as cli
from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.edged.state.audit import AuditTampered, read_anchor_key, record_hash
from bifente.edged.state.audit.anchor import anchor_mac
from bifente.edged.state.checkpoint import CheckpointError, verify_checkpoint

pytestmark = pytest.mark.asyncio

PREFIXES, ADDRESSES, ATTEMPTS = 10, 2, 10  # 200 refused pairings from 20 addresses


async def _unpaired_from(bench, source: str) -> Client:
    ws = await websockets.connect(f"wss://127.0.0.1:{bench.port}/",
                                  ssl=_context(bench.fingerprint, None, None),
                                  server_hostname="127.0.0.1", local_addr=(source, 0))
    return Client(ws)


async def _refused_pairings(client: Client) -> int:
    refused = 0
    for i in range(ATTEMPTS):
        with pytest.raises(RemoteError):
            await client.call("pair.complete", {"pairing_id": f"bogus-{i}", "code": "123456"})
        refused += 1
    return refused


async def test_unpaired_refusals_are_aggregated_and_written_off_the_loop(edged) -> None:
    bench = await edged()
    log = bench.daemon.audit
    writers: list[str] = []
    write = log._write_group

    def spy(*args: object, **kwargs: object) -> object:
        writers.append(threading.current_thread().name)
        return write(*args, **kwargs)

    log._write_group = spy  # type: ignore[method-assign]
    first_seq = log.head()[0]
    clients = [await _unpaired_from(bench, f"127.0.{x}.{y}")
               for x in range(1, PREFIXES + 1) for y in range(1, ADDRESSES + 1)]
    refused = sum(await asyncio.gather(*(_refused_pairings(c) for c in clients)))
    for c in clients:
        await c.close()
    assert refused == PREFIXES * ADDRESSES * ATTEMPTS
    log.flush()
    records = [r for r in log.records(first_seq)]
    failed = [r for r in records if r.event == "pair.failed"]
    # One record per /24 in the window, not one per attempt (the review saw 2,695 in 10 s).
    assert 1 <= len(failed) <= PREFIXES
    assert {r.actor for r in failed} <= {f"unpaired@127.0.{x}.0/24"
                                        for x in range(1, PREFIXES + 1)}
    assert len(records) <= 3 * PREFIXES
    # Every attempt is accounted for once the windows close: written, or counted.
    bench.daemon.audit_budget.flush(everything=True)
    log.flush()
    records = list(log.records(first_seq))
    counted = sum(r.data()["count"] for r in records
                  if r.event == "audit.aggregated" and r.data()["event"] == "pair.failed")
    suppressed = sum(n for r in records if r.event == "audit.suppressed"
                     for event, n in r.data()["counts"] if event == "pair.failed")
    assert len(failed) + counted + suppressed == refused
    # No append ran on the event loop's thread.
    assert writers and all(name.startswith("audit-writer") for name in writers)
    assert log.verify().ok


async def test_forged_tail_refused_at_start_and_never_reanchored(tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state", mdns=False,
                    pcsc=False)
    daemon = Daemon(config)
    await daemon.start()
    await daemon.stop()
    db = tmp_path / "state" / "audit.db"
    anchor_file = Path(f"{db}.anchor")
    anchor = await asyncio.to_thread(anchor_file.read_bytes)
    _append_forged(db, 3)  # the review's reproduction, without the key
    assert cli(["audit", "verify", "--db", str(db)]) == 1
    with pytest.raises(AuditTampered, match="appended by someone else"):
        Daemon(config)
    assert await asyncio.to_thread(anchor_file.read_bytes) == anchor  # the evidence is left alone


async def test_checkpoint_catches_what_root_with_the_key_can_do(edged, tmp_path,
                                                                   capsys) -> None:
    bench = await edged()
    async with await bench.client("auditor", "admin") as admin:
        for _ in range(3):
            await admin.call("system.info")
        checkpoint = await admin.call("audit.checkpoint")
        with pytest.raises(RemoteError) as exc:
            async with await bench.client("reader", "identity:read") as reader:
                await reader.call("audit.checkpoint")
        assert exc.value.reason == "missing_scope"
    seq, digest = verify_checkpoint(checkpoint, device=checkpoint["device"])
    kept = tmp_path / "kept-elsewhere.json"
    kept.write_text(json.dumps(checkpoint))
    state = bench.daemon.config.state_dir
    await bench.daemon.stop()
    db = state / "audit.db"
    key = read_anchor_key(state / "audit.key", bench.daemon.key_wrapper)  # root can
    verify = ["audit", "verify", "--db", str(db), "--anchor-key-file", str(state / "audit.key"),
              "--state-key-file", bench.daemon.config.state_key_file]
    assert cli([*verify, "--checkpoint", str(kept)]) == 0
    assert "(MAC checked); matches the checkpoint" in capsys.readouterr().out

    # Root on the Pi has the anchor key: it cuts the tail and re-anchors. Without the
    # checkpoint the log looks fine; with it, the cut shows.
    _root_rewrite(db, key, keep=seq - 1, forge=0)
    assert cli(verify) == 0
    assert cli([*verify, "--checkpoint", str(kept)]) == 1
    assert f"before the checkpoint at record {seq}" in capsys.readouterr().out

    # Root cuts before the checkpoint and appends forged records past it, re-anchored.
    _root_rewrite(db, key, keep=seq - 1, forge=3)
    assert cli(verify) == 0
    assert cli([*verify, "--checkpoint", str(kept)]) == 1
    assert f"record {seq} does not match the checkpoint" in capsys.readouterr().out

    # A checkpoint edited to fit the forged log no longer verifies.
    forged = dict(checkpoint, hash=_head(db)[1], seq=_head(db)[0])
    with pytest.raises(CheckpointError, match="signature"):
        verify_checkpoint(forged)
    assert digest != forged["hash"]


def _head(db: Path) -> tuple[int, str]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    finally:
        conn.close()


def _append_forged(db: Path, n: int) -> None:
    """Correctly chained records appended with plain sqlite3 (triggers dropped)."""
    conn = sqlite3.connect(db)
    for name in ("records_no_update", "records_no_delete", "records_grow_at_end"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    seq, prev = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    for _ in range(n):
        seq += 1
        fields = '{"client":"reception"}'
        when = "2026-01-01T00:00:00.000Z"
        digest = record_hash(bytes.fromhex(prev), seq, when, "client.revoke", "admin",
                             fields).hex()
        conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (seq, when, "client.revoke", "admin", fields, prev, digest))
        prev = digest
    conn.commit()
    conn.close()


def _root_rewrite(db: Path, key: bytes, *, keep: int, forge: int) -> None:
    """What root with the anchor key does: cut after `keep`, forge, write a valid anchor."""
    conn = sqlite3.connect(db)
    for name in ("records_no_update", "records_no_delete", "records_grow_at_end"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    conn.execute("DELETE FROM records WHERE seq > ?", (keep,))
    conn.commit()
    conn.close()
    _append_forged(db, forge)
    seq, digest = _head(db)
    Path(f"{db}.anchor").write_text(json.dumps(
        {"seq": seq, "hash": digest, "mac": anchor_mac(key, seq, digest)}))
