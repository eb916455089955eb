"""The audit log: chain, anchor, tamper reports, privacy guard, crash safety, threads, CLI."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bifente.apdu.identity import mask_nir
from bifente.edged.cli.audit import add_parsers
from bifente.edged.cli.errors import describe_error
from bifente.edged.state.audit import (
    GENESIS,
    MAX_FIELDS_BYTES,
    AuditError,
    AuditLog,
    AuditTampered,
    default_state_dir,
    record_hash,
)
from bifente.edged.state.audit.anchor import SLOT_BYTES, read_anchor
from bifente.edged.state.audit.log import GROUP_MAX
from bifente.edged.state.audit.record import canonical

REPO = Path(__file__).resolve().parents[2]
KEY = b"anchor key for the tests, 32 b.."
PARIS_NIR = "1800175115001" + f"{97 - 1800175115001 % 97:02d}"
BASTIA_NIR = "278022B01103413"  # Corsica: 2B


def make_log(path: Path, n: int = 20, key: bytes | None = None) -> Path:
    with AuditLog(path, anchor_key=key) as log:
        for i in range(1, n + 1):
            log.append("card.inserted", actor="slot0", n=i)
    return path


def tamper(path: Path, *statements: str | tuple[str, tuple[object, ...]]) -> None:
    """What an attacker with the file does: plain sqlite3, triggers dropped."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS records_no_update")
    conn.execute("DROP TRIGGER IF EXISTS records_no_delete")
    conn.execute("DROP TRIGGER IF EXISTS records_grow_at_end")
    for statement in statements:
        sql, params = statement if isinstance(statement, tuple) else (statement, ())
        conn.execute(sql, params)
    conn.commit()
    conn.close()


def row(path: Path, seq: int) -> tuple[int, str, str, str, str, str, str]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM records WHERE seq = ?", (seq,)).fetchone()
    finally:
        conn.close()


def verify(path: Path, key: bytes | None = None) -> tuple[bool, int | None, str]:
    with AuditLog(path, readonly=True, anchor_key=key) as log:
        report = log.verify()
    return report.ok, report.first_bad_seq, report.reason


def anchor_of(path: Path) -> dict[str, object]:
    """The anchor's fields as stored in its newest slot (without the slot's checksum)."""
    anchor = read_anchor(Path(f"{path}.anchor"))
    assert anchor is not None
    fields: dict[str, object] = {"seq": anchor.seq, "hash": anchor.hash}
    if anchor.mac is not None:
        fields["mac"] = anchor.mac
    if anchor.next is not None:
        fields["next"] = {"seq": anchor.next[0], "hash": anchor.next[1]}
    if anchor.write is not None:
        fields["w"] = anchor.write
    return fields


def anchored_seq(path: Path) -> int:
    anchor = read_anchor(Path(f"{path}.anchor"))
    return anchor.seq if anchor else 0


def last_seq(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT MAX(seq) FROM records").fetchone()[0] or 0
    finally:
        conn.close()


def write_anchor(path: Path, data: dict[str, object]) -> None:
    """What an attacker who knows the format does: the newest slot rewritten with `data` and a
    checksum that matches (the checksum only catches torn writes; the MAC catches edits)."""
    file = Path(f"{path}.anchor")
    raw = bytearray(file.read_bytes() if file.exists() else b" " * 2 * SLOT_BYTES)
    current = read_anchor(file) if file.exists() else None
    fields = {"w": (current.write or 0) + 1 if current else 1, **data}
    fields["sum"] = hashlib.sha256(canonical(fields).encode()).hexdigest()
    slot = (canonical(fields) + "\n").encode().ljust(SLOT_BYTES)
    at = fields["w"] % 2 * SLOT_BYTES  # type: ignore[operator]
    raw[at:at + SLOT_BYTES] = slot
    file.write_bytes(bytes(raw))


# --- the chain ---------------------------------------------------------------------------------

def test_append_verify_round_trip(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        first = log.append("pin.verify", actor="keypad", outcome="wrong", tries_left=2)
        second = log.append("cps.sign", actor="client:ab12", algo="RSA-PSS", digest="sha256",
                            nir=mask_nir(PARIS_NIR), note="café")
        assert (first.seq, second.seq) == (1, 2)
        assert first.prev == GENESIS.hex() and second.prev == first.hash
        assert first.fields == '{"outcome":"wrong","tries_left":2}'
        assert second.data()["note"] == "café" and second.data()["nir"] == "180************"
        assert second.hash == record_hash(bytes.fromhex(first.hash), 2, second.time, "cps.sign",
                                          "client:ab12", second.fields).hex()
        assert first.time.endswith("Z") and len(first.time) == len("2024-01-01T00:00:00.000Z")
        assert list(log.records()) == [first, second]
        report = log.verify()
    assert report.ok and report.records == 2 and report.first_bad_seq is None
    assert report.reason == "2 records, chain intact, anchor at record 2 (MAC not checked)"
    assert anchor_of(tmp_path / "audit.db") == {"seq": 2, "hash": second.hash, "w": 4}


def test_record_hash_is_the_documented_encoding() -> None:
    prev = bytes(range(32))
    texts = [b"2024-05-01T08:00:00.000Z", b"pin.verify", b"keypad", '{"a":"é"}'.encode()]
    manual = hashlib.sha256(prev + (7).to_bytes(8, "big") + b"".join(
        len(t).to_bytes(4, "big") + t for t in texts)).digest()
    assert record_hash(prev, 7, "2024-05-01T08:00:00.000Z", "pin.verify", "keypad",
                       '{"a":"é"}') == manual


def test_empty_log_verifies(tmp_path: Path) -> None:
    AuditLog(tmp_path / "audit.db").close()
    assert verify(tmp_path / "audit.db") == (True, None, "empty log")


def test_schema_and_pragmas(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        columns = [r[1] for r in log._conn.execute("PRAGMA table_info(records)")]
    assert columns == ["seq", "time", "event", "actor", "fields", "prev", "hash"]
    assert (tmp_path / "audit.db").stat().st_mode & 0o777 == 0o600


# --- tampering, each reported at the first bad record ------------------------------------------

@pytest.mark.parametrize("column, value", [
    ("fields", '{"n":99}'), ("actor", "someone else"), ("event", "card.removed"),
    ("time", "2020-01-01T00:00:00.000Z"), ("hash", "ab" * 32)])
def test_altered_record(tmp_path: Path, column: str, value: str) -> None:
    path = make_log(tmp_path / "audit.db")
    tamper(path, (f"UPDATE records SET {column} = ? WHERE seq = 17", (value,)))
    assert verify(path) == (False, 17, "record 17 altered (hash mismatch)")


def test_altered_prev(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    tamper(path, ("UPDATE records SET prev = ? WHERE seq = 17", ("cd" * 32,)))
    assert verify(path) == (False, 17,
                            "record 17 inserted or reordered (prev does not match record 16)")


def test_malformed_columns(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    tamper(path, "UPDATE records SET hash = 'not hex' WHERE seq = 3")
    assert verify(path) == (False, 3, "record 3 altered (malformed prev or hash)")
    # A table rebuilt without column types can hold numbers and NULLs where text belongs.
    tamper(path, "CREATE TABLE r2 (seq INTEGER PRIMARY KEY, time, event, actor, fields, prev, "
           "hash)", "INSERT INTO r2 SELECT * FROM records", "DROP TABLE records",
           "ALTER TABLE r2 RENAME TO records", "UPDATE records SET actor = 42 WHERE seq = 2")
    assert verify(path) == (False, 2, "record 2 altered (malformed actor)")
    tamper(path, "UPDATE records SET actor = NULL WHERE seq = 2")
    assert verify(path) == (False, 2, "record 2 altered (malformed actor)")


def test_deleted_middle_records(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    tamper(path, "DELETE FROM records WHERE seq = 12")
    assert verify(path) == (False, 12, "record 12 missing (sequence jumps from 11 to 13)")
    tamper(path, "DELETE FROM records WHERE seq = 13")
    assert verify(path) == (False, 12,
                            "records 12 to 13 missing (sequence jumps from 11 to 14)")


def test_deleted_first_record(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    tamper(path, "DELETE FROM records WHERE seq = 1")
    assert verify(path) == (False, 1, "record 1 missing (log starts at 2)")


def _shift_up_from(path: Path, seq: int, last: int = 20) -> None:
    tamper(path, *(f"UPDATE records SET seq = {s + 1} WHERE seq = {s}"
                   for s in range(last, seq - 1, -1)))


def test_forged_record_inserted_in_the_middle(tmp_path: Path) -> None:
    # The forger knows the format and hashes the forged record properly: the break shows on
    # the record after it, whose prev still points at the real record 12.
    path = make_log(tmp_path / "audit.db")
    _shift_up_from(path, 13)
    prev = row(path, 12)[6]
    t, fields = "2024-05-01T08:00:00.000Z", '{"n":0}'
    forged = record_hash(bytes.fromhex(prev), 13, t, "pin.verify", "keypad", fields).hex()
    tamper(path, ("INSERT INTO records VALUES (13, ?, 'pin.verify', 'keypad', ?, ?, ?)",
                  (t, fields, prev, forged)))
    assert verify(path) == (False, 14,
                            "record 14 inserted or reordered (prev does not match record 13)")


def test_naive_forged_record(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    _shift_up_from(path, 13)
    tamper(path, ("INSERT INTO records VALUES (13, 't', 'pin.verify', '', '{}', ?, ?)",
                  (row(path, 12)[6], "00" * 32)))
    assert verify(path) == (False, 13, "record 13 altered (hash mismatch)")


def test_reordered_records(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    tamper(path, "UPDATE records SET seq = -1 WHERE seq = 5",
           "UPDATE records SET seq = 5 WHERE seq = 6", "UPDATE records SET seq = 6 WHERE seq = -1")
    assert verify(path) == (False, 5,
                            "record 5 inserted or reordered (prev does not match record 4)")


@pytest.mark.parametrize("key", [None, KEY])
def test_deleted_tail(tmp_path: Path, key: bytes | None) -> None:
    path = make_log(tmp_path / "audit.db", key=key)
    tamper(path, "DELETE FROM records WHERE seq > 17")
    assert verify(path, key) == (False, 18,
                                 "last 3 records missing (anchor says 20, log ends at 17)")
    tamper(path, "DELETE FROM records WHERE seq > 16")
    assert verify(path, key)[2] == "last 4 records missing (anchor says 20, log ends at 16)"


def test_last_record_deleted(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    tamper(path, "DELETE FROM records WHERE seq = 20")
    assert verify(path) == (False, 20, "last record missing (anchor says 20, log ends at 19)")


@pytest.mark.parametrize("key", [None, KEY])
def test_database_replaced_by_an_older_copy(tmp_path: Path, key: bytes | None) -> None:
    path = make_log(tmp_path / "audit.db", n=17, key=key)
    shutil.copyfile(path, tmp_path / "old.db")  # closed: everything is in the main file
    with AuditLog(path, anchor_key=key) as log:
        for _ in range(3):
            log.append("card.removed")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(tmp_path / "old.db", path)
    assert verify(path, key) == (False, 18,
                                 "last 3 records missing (anchor says 20, log ends at 17)")


@pytest.mark.parametrize("key", [None, KEY])
def test_chain_rebuilt_after_an_edit(tmp_path: Path, key: bytes | None) -> None:
    # Someone who edits record 10 and recomputes every hash after it: the chain is whole
    # again, only the anchor still remembers the old end.
    path = make_log(tmp_path / "audit.db", key=key)
    rows = [list(row(path, s)) for s in range(1, 21)]
    rows[9][4] = '{"n":1000}'
    prev = bytes.fromhex(rows[8][6])
    statements: list[tuple[str, tuple[object, ...]]] = []
    for r in rows[9:]:
        digest = record_hash(prev, r[0], r[1], r[2], r[3], r[4])
        statements.append(("UPDATE records SET fields = ?, prev = ?, hash = ? WHERE seq = ?",
                           (r[4], prev.hex(), digest.hex(), r[0])))
        prev = digest
    tamper(path, *statements)
    assert verify(path, key) == (False, 20,
                                 "record 20 does not match the anchor (history rewritten up to it)")


def test_anchor_edited_without_mac(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    good = anchor_of(path)
    write_anchor(path, {**good, "seq": 25})
    assert verify(path) == (False, 21, "last 5 records missing (anchor says 25, log ends at 20)")
    write_anchor(path, {**good, "hash": "00" * 32})
    assert verify(path) == (False, 20,
                            "record 20 does not match the anchor (history rewritten up to it)")
    Path(f"{path}.anchor").write_text("{not json")
    assert verify(path) == (False, None, "anchor unreadable (not JSON)")
    Path(f"{path}.anchor").unlink()
    assert verify(path) == (False, None, "anchor missing (log ends at 20)")


def test_tail_cut_and_anchor_rewritten_without_mac_goes_unseen(tmp_path: Path) -> None:
    # The documented limit: without a MAC key, whoever can write both files wins...
    path = make_log(tmp_path / "audit.db")
    tamper(path, "DELETE FROM records WHERE seq > 17")
    write_anchor(path, {"seq": 17, "hash": row(path, 17)[6]})
    assert verify(path)[0] is True
    # ...with one, the same forged anchor is caught.
    path = make_log(tmp_path / "keyed.db", key=KEY)
    tamper(path, "DELETE FROM records WHERE seq > 17")
    write_anchor(path, {"seq": 17, "hash": row(path, 17)[6], "mac": anchor_of(path)["mac"]})
    assert verify(path, KEY) == (False, None, "anchor altered (MAC mismatch)")


def test_anchor_edited_with_mac(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db", key=KEY)
    good = anchor_of(path)
    assert set(good) == {"seq", "hash", "mac", "w"}
    assert verify(path, KEY)[0] and verify(path, None)[0]
    genuine = Path(f"{path}.anchor").read_bytes()
    edits: list[dict[str, object]] = [
        {**good, "seq": 25}, {**good, "w": good["w"] + 7},  # type: ignore[operator]
        {"seq": 20, "hash": good["hash"], "w": good["w"]}, {**good, "mac": "é" * 64}]
    for edit, reason in zip(edits, ("MAC mismatch", "MAC mismatch", "MAC missing",
                                    "MAC mismatch"), strict=True):
        Path(f"{path}.anchor").write_bytes(genuine)
        write_anchor(path, edit)
        assert verify(path, KEY) == (False, None, f"anchor altered ({reason})"), edit
    Path(f"{path}.anchor").write_bytes(genuine)
    write_anchor(path, good)  # the same fields again: nothing changed
    assert verify(path, b"another key of at least 16 bytes") == (
        False, None, "anchor altered (MAC mismatch)")
    assert verify(path, KEY)[0]


def test_first_problem_wins(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db")
    tamper(path, "DELETE FROM records WHERE seq > 17",
           "UPDATE records SET fields = '{}' WHERE seq = 9", "DELETE FROM records WHERE seq = 4")
    assert verify(path) == (False, 4, "record 4 missing (sequence jumps from 3 to 5)")


def test_not_an_audit_log(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    ok, bad, reason = verify(tmp_path / "junk.db")
    assert not ok and bad is None and reason.startswith("not an audit log")
    with AuditLog(tmp_path / "junk.db", readonly=True) as log, pytest.raises(AuditError):
        list(log.records())


_COLUMN = st.sampled_from(["time", "event", "actor", "fields", "prev", "hash"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=st.integers(1, 8), column=_COLUMN, value=st.text(min_size=1, max_size=20))
def test_any_single_alteration_is_found_at_its_record(seq: int, column: str, value: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_log(Path(tmp) / "audit.db", n=8)
        if value == row(path, seq)[["time", "event", "actor", "fields", "prev", "hash"]
                                   .index(column) + 1]:
            return
        tamper(path, (f"UPDATE records SET {column} = ? WHERE seq = ?", (value, seq)))
        ok, bad, reason = verify(path)
    assert not ok and bad == seq and reason.startswith(f"record {seq} ")


# --- the anchor and crashes ------------------------------------------------------------------

def test_anchor_one_behind_is_a_crash_not_tampering(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, anchor_key=KEY) as log:
        first = log.append("card.inserted")
        last = log.append("card.removed")
        # As if killed between COMMIT and the rename: the anchor announcing record 2 stays.
        log._write_anchor(1, first.hash, (2, last.hash))
    ok, _, reason = verify(path, KEY)
    assert ok and reason == ("2 records, chain intact, anchor at record 1 "
                             "(1 behind, announced: a crash after the commit) (MAC checked)")
    with AuditLog(path, anchor_key=KEY) as log:  # reopening catches the anchor up
        assert anchor_of(path)["seq"] == 2 and anchor_of(path)["hash"] == last.hash
        log.append("card.inserted")
    assert verify(path, KEY)[0]


def test_crash_before_the_first_anchor(tmp_path: Path) -> None:
    # The first record is announced (seq 0, genesis) before its commit: a log with one record
    # and no anchor lost its anchor.
    path = make_log(tmp_path / "audit.db", n=1)
    announced = anchor_of(path)
    assert announced["seq"] == 1
    Path(f"{path}.anchor").unlink()
    assert verify(path) == (False, None, "anchor missing (log ends at 1)")


def _forge(path: Path, n: int, event: str = "client.revoke") -> None:
    """Review M7: append n correctly chained records, without the key."""
    last = row(path, max(r for (r,) in sqlite3.connect(path).execute("SELECT seq FROM records")))
    seq, prev = last[0], bytes.fromhex(last[6])
    statements = []
    for _ in range(n):
        seq += 1
        fields = json.dumps({"client": "reception"}, separators=(",", ":"))
        when = "2026-01-01T00:00:00.000Z"
        digest = record_hash(prev, seq, when, event, "admin", fields)
        statements.append(("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (seq, when, event, "admin", fields, prev.hex(), digest.hex())))
        prev = digest
    tamper(path, *statements)


@pytest.mark.parametrize("forged", [1, 3])
def test_appended_forgeries_are_detected_and_never_reanchored(tmp_path: Path,
                                                                 forged: int) -> None:
    path = make_log(tmp_path / "audit.db", n=5, key=KEY)
    before = Path(f"{path}.anchor").read_bytes()
    _forge(path, forged)
    ok, bad, reason = verify(path, KEY)
    assert not ok and bad == 6
    assert "appended by someone else" in reason
    assert not verify(path)[0]  # caught without the key too (the anchor was left as it was)
    with pytest.raises(AuditTampered, match="appended by someone else"):
        AuditLog(path, anchor_key=KEY)
    assert Path(f"{path}.anchor").read_bytes() == before  # not re-anchored


def test_writer_refuses_a_log_that_lost_its_tail(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db", key=KEY)
    tamper(path, "DELETE FROM records WHERE seq > 17")
    with pytest.raises(AuditTampered) as info:
        AuditLog(path, anchor_key=KEY)
    assert info.value.first_bad_seq == 18 and "last 3 records missing" in str(info.value)
    assert anchor_of(path)["seq"] == 20  # the evidence is left alone
    Path(f"{path}.anchor").unlink()
    with pytest.raises(AuditTampered, match=r"anchor missing \(log ends at 17\)"):
        AuditLog(path, anchor_key=KEY)
    assert AuditLog(tmp_path / "new.db", anchor_key=KEY).verify().ok  # lock released each time


_WRITER = """
import sys
from bifente.edged.state.audit import AuditLog
log = AuditLog(sys.argv[1], anchor_key=sys.argv[2].encode())
print("ready", flush=True)
n = 0
while True:
    log.append("test.tick", actor="writer", n=n, pad="x" * (n % 300))
    n += 1
"""


def test_sigkill_mid_append_leaves_a_valid_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    rng = random.Random()
    counts = []
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), KEY.decode()],
                                cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
            proc.stdout.close()  # type: ignore[union-attr]
        # Before any writer reopens it: the anchor is never ahead, and at most one behind.
        assert verify(path, KEY)[0]
        assert last_seq(path) - anchored_seq(path) in (0, 1)
        with AuditLog(path, anchor_key=KEY) as log:
            report = log.verify()
            assert report.ok, report.reason
            record = log.append("test.reopen")
            assert record.seq == report.records + 1
            counts.append(record.seq)
    assert counts == sorted(counts) and counts[-1] > 8  # the writers got some appends in
    assert verify(path, KEY)[0]


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        with pytest.raises(AuditError, match="another process is writing"):
            AuditLog(tmp_path / "audit.db")
        with AuditLog(tmp_path / "audit.db", readonly=True) as reader:  # readers are fine
            log.append("card.inserted")
            assert reader.verify().ok and len(list(reader.records())) == 1
    AuditLog(tmp_path / "audit.db").close()



def test_submit_does_not_wait_for_a_write_in_progress(tmp_path: Path) -> None:
    """The event loop submits while the writer thread is inside a write (its fsyncs hold the
    database lock): submit returns at once and the record is written after (review §2, S)."""
    with AuditLog(tmp_path / "audit.db") as log:
        submitted = threading.Event()
        with log._lock:  # a write in progress, as the writer thread holds it through fsync
            caller = threading.Thread(target=lambda: (log.submit("card.inserted"),
                                                      submitted.set()))
            caller.start()
            caller.join(timeout=30)  # a deadlock detector, not a speed check
            assert submitted.is_set(), "submit waited for the write in progress"
        log.flush()
        assert [r.event for r in log.records()] == ["card.inserted"]
    with AuditLog(tmp_path / "audit.db") as log:
        log.close()
        with pytest.raises(AuditError, match="closed"):
            log.submit("card.inserted")


def _commits(log: AuditLog) -> list[str]:
    """The COMMITs the writer's connection runs from now on, in a list."""
    seen: list[str] = []
    log._conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def test_records_submitted_together_are_written_as_one_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten records submitted within the group window: one announcement, one commit, one move
    (docs/audit.md, "Writing"), the anchor on the last one. Each anchor write is one slot
    rewritten in place: no rename."""
    path = tmp_path / "audit.db"
    renamed: list[str] = []
    real_replace = os.replace

    def counting_replace(src: str, dst: str) -> None:  # the real rename, counted
        renamed.append(str(dst))
        real_replace(src, dst)

    with AuditLog(path, anchor_key=KEY, group_window=1.0) as log:
        log.append("daemon.start")
        written = anchor_of(path)["w"]
        commits = _commits(log)
        monkeypatch.setattr(os, "replace", counting_replace)
        futures = [log.submit("test.tick", n=i) for i in range(10)]
        log.flush()  # the group goes now, without waiting for the rest of its window
        records = [future.result(timeout=30) for future in futures]
        monkeypatch.undo()
        assert commits == ["COMMIT"]
        assert anchor_of(path)["w"] == written + 2 and renamed == []
        assert anchor_of(path) == {"seq": records[-1].seq, "hash": records[-1].hash,
                                   "mac": anchor_of(path)["mac"], "w": written + 2}
    assert [r.seq for r in records] == list(range(2, 12))
    ok, _, reason = verify(path, KEY)
    assert ok and reason == "11 records, chain intact, anchor at record 11 (MAC checked)"


def test_a_submitted_record_waits_for_its_window_and_a_waited_one_does_not(
        tmp_path: Path) -> None:
    """`submit` leaves the record queued for the group window; `append` (someone waits) takes
    the queue with it at once, in submission order."""
    path = tmp_path / "audit.db"
    window = 1.0
    with AuditLog(path, group_window=window) as log:
        commits = _commits(log)
        started = time.monotonic()
        queued = log.submit("card.inserted")
        with AuditLog(path, readonly=True) as reader:
            assert list(reader.records()) == []  # still in its window
        waited = log.append("card.removed")
        assert time.monotonic() - started < window  # the append did not wait for the window
        assert queued.done() and queued.result().seq == 1 and waited.seq == 2
        assert commits == ["COMMIT"]  # one group: the queued record went with the append
    assert verify(path)[0]


def test_a_group_at_its_limit_goes_without_waiting(tmp_path: Path) -> None:
    """GROUP_MAX records queued: they are written as one group even inside the window, and
    the next record starts a new group."""
    path = tmp_path / "audit.db"
    with AuditLog(path, group_window=1.0) as log:
        commits = _commits(log)
        futures = [log.submit("test.tick", n=i) for i in range(GROUP_MAX + 1)]
        futures[GROUP_MAX - 1].result(timeout=30)  # before the window closes
        assert not futures[GROUP_MAX].done()
        log.flush()
        assert commits == ["COMMIT", "COMMIT"]
    assert verify(path)[0]


def test_a_failed_group_fails_each_of_its_records_and_the_next_group_is_written(
        tmp_path: Path) -> None:
    """A group that cannot be committed: every record in it gets the error, nothing of it is
    stored, and the writer goes on with the next group."""
    path = tmp_path / "audit.db"
    with AuditLog(path, group_window=1.0) as log:
        with log._lock:
            futures = [log.submit("test.tick", n=i) for i in range(3)]
            # The next INSERT fails, as a full disk would make it.
            log._conn.execute("CREATE TEMP TRIGGER fail BEFORE INSERT ON records "
                              "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END")
        log.flush()
        for future in futures:
            with pytest.raises(sqlite3.IntegrityError, match="disk full"):
                future.result(timeout=30)
        log._conn.execute("DROP TRIGGER temp.fail")
        record = log.append("card.inserted")
        assert record.seq == 1
    assert verify(path)[0]


def test_a_crash_after_a_group_commit_is_accepted_and_only_that_group(tmp_path: Path) -> None:
    """The anchor announcing a group of three, the group committed, the move lost: a crash,
    not tampering. A record past the announced group is someone else's."""
    path = tmp_path / "audit.db"
    with AuditLog(path, anchor_key=KEY) as log:
        first = log.append("card.inserted")
        group = [log.append("test.tick", n=i) for i in range(3)]
        log._write_anchor(1, first.hash, (group[-1].seq, group[-1].hash))
    ok, _, reason = verify(path, KEY)
    assert ok and reason == ("4 records, chain intact, anchor at record 1 "
                             "(3 behind, announced: a crash after the commit) (MAC checked)")
    with AuditLog(path, anchor_key=KEY) as log:
        log._write_anchor(1, first.hash, (group[-1].seq, group[-1].hash))
    _forge(path, 1)
    ok, bad, reason = verify(path, KEY)
    assert not ok and bad == 5 and reason == (
        "record 5 follows the group the anchor announced (records 2 to 4), which is all the "
        "writer leaves unanchored (appended by someone else)")


def test_a_group_tail_that_is_not_the_announced_one_is_someone_elses(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, anchor_key=KEY) as log:
        first = log.append("card.inserted")
        second = log.append("card.removed")
        # Announces a group ending at record 3 (never written); the log ends at 2.
        log._write_anchor(1, first.hash, (3, second.hash))
    ok, bad, reason = verify(path, KEY)
    assert not ok and bad == 2 and reason == (
        "record 2 follows the anchored record 1 but was not announced by it (appended by "
        "someone else)")


# --- append-only triggers ----------------------------------------------------------------------

def test_triggers_refuse_update_delete_and_out_of_place_inserts(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        log.append("card.inserted")
        last = log.append("card.removed")
        conn = log._conn
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"):
            conn.execute("UPDATE records SET actor = 'x' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
            conn.execute("DELETE FROM records WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="only grows at its end"):
            conn.execute("INSERT INTO records VALUES (5, 't', 'e', '', '{}', ?, ?)",
                         (last.hash, "00" * 32))
        with pytest.raises(sqlite3.IntegrityError, match="only grows at its end"):
            conn.execute("INSERT INTO records VALUES (3, 't', 'e', '', '{}', ?, ?)",
                         ("00" * 32, "00" * 32))
        with pytest.raises(sqlite3.IntegrityError, match="only grows at its end"):
            conn.execute("INSERT OR REPLACE INTO records VALUES (1, 't', 'e', '', '{}', ?, ?)",
                         ("00" * 32, "00" * 32))
        assert log.verify().ok and len(list(log.records())) == 2


def test_dropped_triggers_are_restored_with_a_warning(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = make_log(tmp_path / "audit.db", n=2)
    tamper(path)
    with caplog.at_level(logging.WARNING), AuditLog(path) as log, pytest.raises(
            sqlite3.IntegrityError):
        log._conn.execute("DELETE FROM records")
    assert "append-only triggers were missing" in caplog.text


# --- the privacy guard -------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "pin", "PIN", "Pin", "user_pin", "newPin", "pin_code", "puk", "PUK", "password",
    "admin_password", "Passphrase", "secret", "client_secret", "key", "KEY", "api_key",
    "private", "privateKey", "private_key", "session_token", "otp"])
def test_secret_field_names_are_refused(tmp_path: Path, name: str) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        with pytest.raises(ValueError, match="looks like a secret"):
            log.append("pin.verify", **{name: "1234"})
        with pytest.raises(ValueError, match="looks like a secret"):
            log.append("pin.verify", outcome={"detail": {name: 1}})
        assert list(log.records()) == []


NIR_SHAPED_VALUES = [
    PARIS_NIR, BASTIA_NIR, BASTIA_NIR.lower(), " ".join([PARIS_NIR[:1], PARIS_NIR[1:3],
                                                         PARIS_NIR[3:5], PARIS_NIR[5:7],
                                                         PARIS_NIR[7:10], PARIS_NIR[10:13],
                                                         PARIS_NIR[13:]]),
    f"patient {PARIS_NIR} at the desk", f"nir:{BASTIA_NIR}", int(PARIS_NIR), [PARIS_NIR],
    {"patient": {"nir": PARIS_NIR}}]


@pytest.mark.parametrize("value", NIR_SHAPED_VALUES)
def test_full_nirs_are_masked_never_refused(tmp_path: Path, value: object,
                                            caplog: pytest.LogCaptureFixture) -> None:
    # D1: the guard masks; an audit write never fails the action it records.
    with AuditLog(tmp_path / "audit.db") as log:
        record = log.append("consent.answer", subject=value)
        by_actor = log.append("consent.answer", actor=PARIS_NIR)
        for text in (record.fields, by_actor.actor, caplog.text):
            assert PARIS_NIR not in text and BASTIA_NIR not in text.upper()
            assert PARIS_NIR[3:] not in text.replace(" ", "")
        assert "*" * 12 in record.fields and by_actor.actor == mask_nir(PARIS_NIR)
        assert "subject" in caplog.text and "masked" in caplog.text
        assert log.verify().ok


def _message_id(pid: int, when: int, rand: int) -> str:
    """email.utils.make_msgid's layout: <TIME.PID.RANDOM@domain>, TIME with 12+ digits."""
    return f"<{when}.{pid}.{rand}@cabinet.test>"


@pytest.mark.parametrize("pid", [1, 42, 837, 999, 4242, 31663])
def test_message_ids_are_not_nirs_whatever_the_pid(tmp_path: Path, pid: int) -> None:
    # D1: with a 3-digit PID, TIME (12 digits) and PID joined across the dot were read as a
    # NIR; 1000/1000 Message-IDs were refused for PID 837.
    with AuditLog(tmp_path / "audit.db") as log:
        for i in range(200):
            mid = _message_id(pid, 173338920000 + i * 7919, 10**18 + i)
            assert log.append("mail.delivered", message_id=mid, actor="edged").data() == {
                "message_id": mid}


@pytest.mark.parametrize("value", ["180017511500199", "1 80 01 75 115 001 99"])
def test_a_nir_shape_with_a_wrong_key_is_kept(tmp_path: Path, value: str) -> None:
    assert value.replace(" ", "") != PARIS_NIR
    with AuditLog(tmp_path / "audit.db") as log:
        assert log.append("x.y", ref=value).data()["ref"] == value


@pytest.mark.parametrize("value", NIR_SHAPED_VALUES)
def test_full_nirs_are_masked_never_dropped(tmp_path: Path, value: object) -> None:
    # Review L3: the action happened, so its record is written, with the NIR masked.
    with AuditLog(tmp_path / "audit.db") as log:
        record = log.append("consent.answer", subject=value)
        second = log.append("consent.answer", actor=PARIS_NIR)
        assert [r.seq for r in log.records()] == [1, 2]
        stored = row(tmp_path / "audit.db", 1)[4] + row(tmp_path / "audit.db", 2)[3]
        for nir in (PARIS_NIR, BASTIA_NIR, BASTIA_NIR.lower()):
            assert nir not in stored and nir[3:] not in stored
        assert "*" in record.fields and second.actor.startswith(("180", "[masked"))
        assert log.verify().ok


@pytest.mark.parametrize("value", [
    mask_nir(PARIS_NIR), mask_nir(BASTIA_NIR), hashlib.sha256(PARIS_NIR.encode()).hexdigest(),
    "1800175115001", 1714567890123, "12345678901234567", "2024-05-01T08:00:00.000Z",
    "123e4567-e89b-12d3-a456-426614174000", "tries left: 2"])
def test_masked_and_harmless_values_are_accepted(tmp_path: Path, value: object) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        record = log.append("consent.answer", subject=value, tries_left=2, keypad="ok")
        assert record.data()["subject"] == value


@pytest.mark.parametrize("event", ["", "Pin.verify", "pin-verify", "1pin", ".pin", "pin verify",
                                   "p" * 65, "pin.vérify"])
def test_bad_event_names(tmp_path: Path, event: str) -> None:
    with AuditLog(tmp_path / "audit.db") as log, pytest.raises(ValueError, match="dotted name"):
        log.append(event)


@pytest.mark.parametrize("event", ["pin.verify", "cps.sign", "pair.complete", "client.revoke",
                                   "consent.answer", "card.inserted", "p" * 64, "dmp.read_v2"])
def test_good_event_names(tmp_path: Path, event: str) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        assert log.append(event).event == event


def test_fields_size_cap(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        room = MAX_FIELDS_BYTES - len('{"v":""}')
        log.append("test.size", v="x" * room)
        with pytest.raises(ValueError, match="4097 bytes"):
            log.append("test.size", v="x" * (room + 1))
        with pytest.raises(ValueError, match="bytes"):
            log.append("test.size", v="é" * (room // 2 + 1))  # two bytes each in UTF-8
        assert log.verify().ok and len(list(log.records())) == 1


@pytest.mark.parametrize("value", [b"\x00", float("nan"), float("inf"), {1, 2}, object(),
                                   "\ud800", [[[[[[[[[[1]]]]]]]]]], {"bad key": 1}])
def test_values_that_are_not_plain_json_are_refused(tmp_path: Path, value: object) -> None:
    with AuditLog(tmp_path / "audit.db") as log, pytest.raises(ValueError):
        log.append("test.value", v=value)


def test_bad_actors(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        for actor in ["a" * 129, "line\nbreak", 7]:
            with pytest.raises(ValueError, match="actor"):
                log.append("test.actor", actor=actor)  # type: ignore[arg-type]
        assert log.append("test.actor", actor="Dr Émilie Martin's laptop").actor.startswith("Dr")


# --- threads, asyncio, export, lifecycle --------------------------------------------------------

def test_eight_threads_make_one_contiguous_chain(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        barrier = threading.Barrier(8)

        def work(t: int) -> None:
            barrier.wait()
            for i in range(40):
                log.append("test.thread", actor=f"t{t}", i=i)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = list(log.records())
        assert [r.seq for r in records] == list(range(1, 321))
        for t in range(8):
            assert [r.data()["i"] for r in records if r.actor == f"t{t}"] == list(range(40))
        assert log.verify().ok and anchor_of(log.path)["seq"] == 320


@pytest.mark.asyncio
async def test_aappend_from_the_event_loop(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        task = asyncio.create_task(ticker())
        records = await asyncio.gather(*(log.aappend("test.async", i=i) for i in range(30)))
        task.cancel()
        assert sorted(r.seq for r in records) == list(range(1, 31))
        assert ticks > 0 and log.verify().ok


def test_export_equals_records(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db") as log:
        for i in range(1200):  # more than one read batch
            log.append("test.export", i=i, text="é\n\"quoted\"", f=0.1, none=None)
        out = io.StringIO()
        assert log.export(out) == 1200
        lines = out.getvalue().splitlines()
        assert [json.loads(line) for line in lines] == [r.to_json() for r in log.records()]
        assert set(json.loads(lines[0])) == {"seq", "time", "event", "actor", "fields", "prev",
                                             "hash"}
        out = io.StringIO()
        assert log.export(out, since=1195) == 5
        assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [
            1196, 1197, 1198, 1199, 1200]
        with pytest.raises(ValueError):
            list(log.records(since=-1))


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    log.append("card.inserted")
    log.close()
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.append("card.removed")
    with pytest.raises(AuditError, match="closed"):
        list(log.records())
    with AuditLog(tmp_path / "audit.db", readonly=True) as reader:
        with pytest.raises(AuditError, match="read-only"):
            reader.append("card.removed")
        assert reader.verify().ok


def test_missing_log_and_short_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        AuditLog(tmp_path / "nope.db", readonly=True)
    assert describe_error(info.value) == (f"no audit log at {tmp_path / 'nope.db'}", 1)
    with pytest.raises(ValueError, match="16 bytes"):
        AuditLog(tmp_path / "audit.db", anchor_key=b"short")


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BIFENTE_STATE_DIR", str(tmp_path))
    assert default_state_dir() == tmp_path
    monkeypatch.delenv("BIFENTE_STATE_DIR")
    assert default_state_dir() == Path("/var/lib/bifente")


# --- the CLI -----------------------------------------------------------------------------------

def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_log(tmp_path / "audit.db")
    assert cli("audit", "verify", "--db", str(path)) == 0
    assert capsys.readouterr().out == (
        "audit log OK: 20 records, chain intact, anchor at record 20 (MAC not checked)\n")
    tamper(path, "UPDATE records SET fields = '{}' WHERE seq = 17")
    assert cli("audit", "verify", "--db", str(path)) == 1
    assert capsys.readouterr().out == "audit log INVALID: record 17 altered (hash mismatch)\n"
    assert cli("audit", "verify", "--db", str(path), "--json") == 1
    assert json.loads(capsys.readouterr().out) == {
        "ok": False, "records": 20, "first_bad_seq": 17,
        "reason": "record 17 altered (hash mismatch)"}


def test_cli_verify_with_the_anchor_key(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = make_log(tmp_path / "audit.db", key=KEY)
    (tmp_path / "key").write_bytes(KEY)
    assert cli("audit", "verify", "--db", str(path), "--anchor-key-file",
               str(tmp_path / "key")) == 0
    assert capsys.readouterr().out.endswith("(MAC checked)\n")
    write_anchor(path, {**anchor_of(path), "seq": 21})
    assert cli("audit", "verify", "--db", str(path), "--anchor-key-file",
               str(tmp_path / "key")) == 1
    key_file = tmp_path / "key"
    assert capsys.readouterr().out == (
        "audit log INVALID: anchor altered (MAC mismatch); or "
        f"{key_file} is not this daemon's anchor key (state_dir/audit.key)\n")


def test_cli_default_db_and_missing_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BIFENTE_STATE_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        cli("audit", "verify")
    assert describe_error(info.value) == (f"no audit log at {tmp_path / 'audit.db'}", 1)
    make_log(tmp_path / "audit.db", n=3)
    assert cli("audit", "verify") == 0
    assert capsys.readouterr().out.startswith("audit log OK: 3 records")


def test_cli_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    path = make_log(tmp_path / "audit.db", n=5)
    with AuditLog(path, readonly=True) as log:
        expected = [r.to_json() for r in log.records()]
    assert cli("audit", "export", "--db", str(path)) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == expected
    assert cli("audit", "export", "--db", str(path), "--since", "3") == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == expected[3:]
    out = tmp_path / "export.jsonl"
    assert cli("audit", "export", "--db", str(path), "--out", str(out)) == 0
    assert capsys.readouterr().err == f"5 records written to {out}\n"
    assert [json.loads(line) for line in out.read_text().splitlines()] == expected
    assert out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SystemExit):
        cli("audit", "export", "--db", str(path), "--since", "-1")
