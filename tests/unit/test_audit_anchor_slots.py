"""The anchor file's two slots: a torn write, an earlier bifente's one-object anchor, and what
an edit of one slot can and cannot do (docs/audit.md, "The anchor")."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from bifente.edged.state.audit import AuditLog, AuditTampered
from bifente.edged.state.audit.anchor import SLOT_BYTES, anchor_mac, read_anchor

KEY = b"anchor key for the tests, 32 b.."


def make_log(path: Path, n: int) -> Path:
    with AuditLog(path, anchor_key=KEY) as log:
        for i in range(n):
            log.append("card.inserted", actor="slot0", n=i)
    return path


def verify(path: Path, key: bytes | None = KEY) -> tuple[bool, int | None, str]:
    with AuditLog(path, readonly=True, anchor_key=key) as log:
        report = log.verify()
    return report.ok, report.first_bad_seq, report.reason


def slots(path: Path) -> tuple[bytes, bytes]:
    raw = Path(f"{path}.anchor").read_bytes()
    assert len(raw) == 2 * SLOT_BYTES
    return raw[:SLOT_BYTES], raw[SLOT_BYTES:]


def newest_slot_index(path: Path) -> int:
    anchor = read_anchor(Path(f"{path}.anchor"))
    assert anchor is not None and anchor.write is not None
    return anchor.write % 2


def tear(path: Path, index: int, keep: int) -> None:
    """A crash in the middle of a slot's write: its first `keep` bytes new, the rest old."""
    file = Path(f"{path}.anchor")
    raw = bytearray(file.read_bytes())
    start = index * SLOT_BYTES
    raw[start + keep:start + SLOT_BYTES] = b"\x00" * (SLOT_BYTES - keep)
    file.write_bytes(bytes(raw))


def test_each_write_goes_to_the_older_slot_and_the_file_keeps_its_size(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db", 1)
    first = read_anchor(Path(f"{path}.anchor"))
    assert first is not None and first.write is not None
    with AuditLog(path, anchor_key=KEY) as log:
        log.append("card.removed")
    after = read_anchor(Path(f"{path}.anchor"))
    assert after is not None and after.write == first.write + 2  # announced, then moved
    assert (after.seq, after.next) == (2, None)
    assert len(Path(f"{path}.anchor").read_bytes()) == 2 * SLOT_BYTES
    older = json.loads(slots(path)[1 - after.write % 2].rstrip(b" "))
    assert older["seq"] == 1 and older["next"]["seq"] == 2  # the announcement, kept whole


@pytest.mark.parametrize("keep", [0, 1, 40, SLOT_BYTES - 2])
def test_a_slot_torn_by_a_crash_leaves_the_other_as_the_anchor(
        tmp_path: Path, keep: int, caplog: pytest.LogCaptureFixture) -> None:
    path = make_log(tmp_path / "audit.db", 5)
    tear(path, newest_slot_index(path), keep)
    ok, _, reason = verify(path)
    # The other slot is the announcement of record 5: a crash right after the commit.
    assert ok, reason
    assert reason == ("5 records, chain intact, anchor at record 4 (1 behind, announced: a "
                      "crash after the commit) (MAC checked); the other anchor slot is torn "
                      "(a crash while writing it, or an edit)")
    with caplog.at_level(logging.WARNING), AuditLog(path, anchor_key=KEY) as log:
        assert "is torn" in caplog.text
        log.append("card.removed")  # the open caught the anchor up; this write overwrote it
    assert verify(path) == (True, None, "6 records, chain intact, anchor at record 6 "
                                        "(MAC checked)")


def test_both_slots_torn_is_refused_at_open(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db", 3)
    tear(path, 0, 10)
    tear(path, 1, 10)
    assert verify(path) == (False, None, "anchor unreadable (both slots torn)")
    with pytest.raises(AuditTampered, match=r"anchor unreadable \(both slots torn\)"):
        AuditLog(path, anchor_key=KEY)


def test_a_blank_slot_is_only_normal_after_the_first_write(tmp_path: Path) -> None:
    # The state a crash leaves between the first record's announcement and its commit: the
    # file's first write, the other slot never used.
    path2 = tmp_path / "fresh.db"
    log2 = AuditLog(path2, anchor_key=KEY)
    log2._write_anchor(0, "00" * 32, None)
    log2.close()
    blank_index = 1 - newest_slot_index(path2)
    assert slots(path2)[blank_index].strip(b" ") == b""
    assert verify(path2) == (True, None, "empty log")
    # A blank slot later is no first write: it is reported as torn, like any damaged slot.
    path = make_log(tmp_path / "later.db", 4)
    file = Path(f"{path}.anchor")
    raw = bytearray(file.read_bytes())
    older = 1 - newest_slot_index(path)
    raw[older * SLOT_BYTES:(older + 1) * SLOT_BYTES] = b" " * SLOT_BYTES
    file.write_bytes(bytes(raw))
    ok, _, reason = verify(path)
    assert ok and reason.endswith("the other anchor slot is torn (a crash while writing it, "
                                  "or an edit)")


def test_tearing_the_newest_slot_and_cutting_one_record_goes_unseen(tmp_path: Path) -> None:
    """The documented limit: with write access to both files, an edit can roll the anchor back
    by one write, which deletes the last record unseen (as putting back an old anchor file
    always could); the report still says a slot is torn."""
    path = make_log(tmp_path / "audit.db", 6)
    tear(path, newest_slot_index(path), 0)
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER records_no_delete")
    conn.execute("DELETE FROM records WHERE seq = 6")
    conn.commit()
    conn.close()
    ok, _, reason = verify(path)
    assert ok and "the other anchor slot is torn" in reason
    # Two writes back is out of reach: the older slot only ever holds the write before.
    path = make_log(tmp_path / "two.db", 6)
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER records_no_delete")
    conn.execute("DELETE FROM records WHERE seq >= 5")
    conn.commit()
    conn.close()
    tear(path, newest_slot_index(path), 0)
    assert verify(path) == (False, 5, "last record missing (anchor says 5, log ends at 4)")


def test_an_earlier_bifentes_one_object_anchor_is_read_then_replaced(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db", 3)
    with AuditLog(path, readonly=True) as log:
        last = list(log.records())[-1]
    legacy = {"seq": 3, "hash": last.hash, "mac": anchor_mac(KEY, 3, last.hash)}
    Path(f"{path}.anchor").write_text(json.dumps(legacy))  # renamed in place, as it was
    assert verify(path) == (True, None, "3 records, chain intact, anchor at record 3 "
                                        "(MAC checked)")
    Path(f"{path}.anchor").write_text(json.dumps({**legacy, "seq": 2}))
    assert verify(path) == (False, None, "anchor altered (MAC mismatch)")
    Path(f"{path}.anchor").write_text(json.dumps(legacy))
    with AuditLog(path, anchor_key=KEY) as log:
        log.append("card.removed")
    anchor = read_anchor(Path(f"{path}.anchor"))
    assert anchor is not None and (anchor.seq, anchor.write) == (4, 2)
    assert len(Path(f"{path}.anchor").read_bytes()) == 2 * SLOT_BYTES
    assert verify(path)[0]


def test_two_slots_with_the_same_write_counter_are_refused(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.db", 2)
    newest = slots(path)[newest_slot_index(path)]
    Path(f"{path}.anchor").write_bytes(newest + newest)
    assert verify(path) == (False, None,
                            "anchor unreadable (two slots with the same write counter)")


def test_verify_while_the_daemon_writes_never_reports_a_false_problem(tmp_path: Path) -> None:
    """A reader may see the anchor move, or a slot half written, between its two reads: it walks
    again, and only a state that holds still is reported."""
    import threading

    path = make_log(tmp_path / "audit.db", 1)
    stop = threading.Event()
    written = [0]

    with AuditLog(path, anchor_key=KEY) as writer:
        def write() -> None:
            while not stop.is_set():
                writer.append("test.tick", n=written[0])
                written[0] += 1

        thread = threading.Thread(target=write)
        thread.start()
        try:
            reports = []
            with AuditLog(path, readonly=True, anchor_key=KEY) as reader:
                while written[0] < 300 or len(reports) < 20:  # walks while records land
                    report = reader.verify()
                    reports.append((report.ok, report.reason))
        finally:
            stop.set()
            thread.join(timeout=30)
    bad = [reason for ok, reason in reports if not ok or "torn" in reason]
    assert bad == []
