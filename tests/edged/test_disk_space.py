"""The low-disk guard (docs/edged.md, "Disk space"): with the state's file system nearly full,
edged refuses new durable work with `disk_full` before writing, keeps what it stored, logs one
line, and takes work again once space is back. A real tmpfs filled by the test, through the
real daemon; the DMP queue through its service on the same guard."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from bifente.client import RemoteError
from bifente.client.codes import STORAGE_FULL
from bifente.edged.api.errors import to_rpc_error
from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.edged.services.dmp import DmpService
from bifente.edged.state.space import DiskFull, SpaceGuard
from bifente.simulators.world import SimulatedWorld
from tests.needs import tmpfs

MIB = 1 << 20


def fill_until(fs: Path, free_mib: int) -> Path:
    """Write a filler file until about `free_mib` MiB stay free on `fs`."""
    st = os.statvfs(fs)
    filler = fs / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free_mib * MIB))
    return filler


@pytest.mark.asyncio
async def test_a_nearly_full_disk_refuses_uploads_keeps_what_is_stored_and_recovers(
        edged, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bifente.edged.state.space")
    with tmpfs(tmp_path / "fs", size="48m") as fs:
        bench = await edged(state_dir=fs / "state", min_free_mb=16)
        async with await bench.client("desk", "identity:read") as client:
            kept = os.urandom(300_000)
            kept_id = await client.upload(kept)  # committed before the disk fills
            audit_before = len(list(bench.daemon.audit.records()))
            filler = fill_until(fs, 10)  # under the 16 MiB reserve

            payload = os.urandom(1000)
            begin = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
            for _ in range(3):
                with pytest.raises(RemoteError) as refused:
                    await client.call("upload.begin", begin)
                assert refused.value.code == STORAGE_FULL
                assert refused.value.reason == "disk_full"
                assert refused.value.data["reserve_bytes"] == 16 * MIB
                assert refused.value.data["free_bytes"] < 16 * MIB
            # One line for the episode, not one per refusal.
            assert caplog.text.count("disk nearly full") == 1

            # What was stored is intact and usable; the audit trail still writes.
            from bifente.edged.api import uploads

            stored = uploads.uploads_of(bench.daemon)
            conn = next(iter(bench.daemon.server.connections))
            assert stored.take(conn.client_id, kept_id, len(kept)) == kept
            assert len(list(bench.daemon.audit.records())) >= audit_before
            assert bench.daemon.audit.verify().ok

            filler.unlink()  # space back: work is taken again, and that is said once
            begun = await client.call("upload.begin", begin)
            await client.call("upload.chunk", {"upload_id": begun["upload_id"], "offset": 0,
                                               "data": base64.b64encode(payload).decode()})
            assert caplog.text.count("disk space back") == 1
        await bench.daemon.stop()  # before the tmpfs goes


@pytest.mark.asyncio
async def test_a_dmp_feed_is_not_queued_on_a_full_disk_and_the_queue_is_kept(
        tmp_path: Path, dmp_sim: SimulatedWorld) -> None:
    config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state", mdns=False,
                    pcsc=False, state_key_file=str(tmp_path / "key" / "state.key"),
                    dmp=dmp_sim.edged_overrides()["dmp"])
    daemon = Daemon(config)
    try:
        await daemon.start()
        service = next(e for e in daemon.extensions if isinstance(e, DmpService))
        first = await service.enqueue("178027505601209", "810001000101", "", b"<doc/>", "consent")

        full = os.statvfs_result((4096, 4096, 1000, 10, 10, 100, 50, 50, 0, 255))
        daemon.space = SpaceGuard(config.state_dir, 64, statvfs=lambda _path: full)
        with pytest.raises(DiskFull) as refused:
            await service.enqueue("178027505601209", "810001000101", "", b"<doc2/>", "consent")
        error = to_rpc_error(refused.value)  # what the client gets
        assert error.code == STORAGE_FULL and error.data["reason"] == "disk_full"
        assert [item.queue_id for item in service.queue.list()] == [first]
    finally:
        await daemon.stop()
    with sqlite3.connect(config.state_dir / "dmp-queue.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_reserve_is_the_larger_of_the_setting_and_five_percent(tmp_path: Path) -> None:
    def disk(total_blocks: int, free_blocks: int) -> os.statvfs_result:
        return os.statvfs_result((4096, 4096, total_blocks, free_blocks, free_blocks,
                                  0, 0, 0, 0, 255))

    small = SpaceGuard(tmp_path, 64, statvfs=lambda _p: disk(100_000, 20_000))  # 390 MiB fs
    assert small.free() == (20_000 * 4096, 64 * MIB)
    small.check("upload", 10 * MIB)
    with pytest.raises(DiskFull):
        small.check("upload", 20 * MIB)  # 78 MiB free - 20 < 64
    large = SpaceGuard(tmp_path, 64, statvfs=lambda _p: disk(10_000_000, 100_000))  # 38 GiB
    with pytest.raises(DiskFull):  # 390 MiB free, but 5 % of 38 GiB is more
        large.check("mail.send")
