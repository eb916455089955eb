"""Reference DMP host benchmarks: index queries at 10,000 documents, a 5 MB feed, traces."""

from __future__ import annotations

import random
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.table import Row, fmt_time
from bifente.simulators.dmp import DmpHost
from bifente.simulators.dmp.auth import hash_password
from bifente.simulators.dmp.cda import build_document
from bifente.simulators.dmp.storage import Document, Trace
from bifente.simulators.dmp.testing import TEST_OID, DmpWorld, FakeClock, national_id, test_nir
from bifente.simulators.world import CardsOn, DmpOptions, SimulatedWorld

__all__ = ["run"]

PATIENTS, DOCS_PER_PATIENT, TRACES = 1000, 10, 10_000
TYPES = ("11488-4", "11490-0", "11502-2", "57833-6", "18776-5", "87273-9", "60591-5",
         "11528-7", "29550-1", "47420-5")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _seed(host: DmpHost, now: float) -> tuple[list[str], str]:
    """1,000 records x 10 documents, through the storage layer; one password for all."""
    storage = host.storage
    assert storage is not None
    password = "bench-pass-word"
    hashed = hash_password(password)
    gp = national_id("gp")
    patients = [test_nir(100_000 + i) for i in range(PATIENTS)]
    with storage.transaction():
        for ins in patients:
            storage.create_dmp(ins, TEST_OID, gp, hashed, now)
            for k in range(DOCS_PER_PATIENT):
                code = TYPES[k % len(TYPES)]
                data = build_document(ins, TEST_OID, code, f"Document {k}", author_id=gp,
                                      author_name="Claire MARTIN")
                storage.insert_document(Document(
                    str(uuid.uuid4()), ins, str(uuid.uuid4()), code, f"Document {k}",
                    "20260101120000+0000", "N", "text/xml", "professional", gp, "10",
                    "Claire MARTIN", gp, now + k, len(data), "0" * 64), data)
    return patients, password


def _index(world: DmpWorld, patients: list[str], quick: bool) -> list[Row]:
    n = 100 if quick else 500
    rng = random.Random(7)
    held = rng.sample(patients, 100)
    for ins in held:  # open the read grants (one consent each), not timed
        assert world.find(ins, "gp").status == 200
    grant: list[float] = []
    for _ in range(n):
        ins = rng.choice(held)
        t = time.perf_counter()
        r = world.find(ins, "gp", consent=None)
        grant.append(time.perf_counter() - t)
        assert r.status == 200 and r.json()["total"] == DOCS_PER_PATIENT
    fresh: list[float] = []
    for ins in rng.sample([p for p in patients if p not in held], n // 5):
        headers = world.consent(ins, "gp", "read")
        t = time.perf_counter()
        r = world.call("GET", f"/api/dmp/{ins}/documents", "gp", headers=headers)
        fresh.append(time.perf_counter() - t)
        assert r.status == 200
    total = PATIENTS * DOCS_PER_PATIENT
    return [
        Row(f"index query, {total:,} docs / {PATIENTS:,} patients", fmt_time(
            statistics.median(grant)), f"p99 {fmt_time(_pct(grant, 0.99))}, n={n}, "
            "consent grant held"),
        Row("index query with a fresh consent record", fmt_time(statistics.median(fresh)),
            f"p99 {fmt_time(_pct(fresh, 0.99))}, n={len(fresh)}, ECDSA check + nonce fsync"),
    ]


def _feed(world: DmpWorld, quick: bool) -> list[Row]:
    ins = world.new_ins()
    world.create("gp", ins)
    pdf = b"%PDF-1.4\n" + secrets.token_bytes(5 * 1024 * 1024 - 9)
    times: list[float] = []
    size = 0
    for i in range(2 if quick else 5):
        data = build_document(ins, TEST_OID, "11528-7", "Imagerie", author_id=national_id("gp"),
                              author_name="Claire MARTIN", pdf=pdf)
        size = len(data)
        t = time.perf_counter()
        r = world.feed(ins, data=data, consent="feed" if i == 0 else None)
        times.append(time.perf_counter() - t)
        assert r.status == 201, r.body[:200]
    median = statistics.median(times)
    return [Row("feed a 5 MB PDF (nonXMLBody CDA)", fmt_time(median),
                f"CDA {size / 1e6:.1f} MB, {size / median / 1e6:.0f} MB/s, n={len(times)}, "
                "checked + stored (fsync)")]


def _traces(world: DmpWorld, patients: list[str], password: str, quick: bool) -> list[Row]:
    host = world.host
    assert host.storage is not None
    ins = patients[0]
    gp = national_id("gp")
    with host.storage.transaction():
        for i in range(TRACES):
            host.storage.add_trace(Trace(world.clock() + i / 1000, ins, "professional", gp,
                                         "retrieve", "ok", actor_name="Claire MARTIN",
                                         profession="10", specialty="SM54",
                                         structure_id="499700001001001", auth_mode="direct",
                                         document_id=str(uuid.uuid4())))
    token = world.patient(ins, password)
    rows = []
    for limit, n in ((1000, 10 if quick else 40), (TRACES, 3 if quick else 10)):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            r = world.client.get(f"/api/patient/traces?limit={limit}", token=token)
            times.append(time.perf_counter() - t)
            assert r.status == 200 and len(r.json()["traces"]) == limit
        rows.append(Row(f"patient reads {limit:,} of {TRACES:,}+ traces",
                        fmt_time(statistics.median(times)),
                        f"p99 {fmt_time(_pct(times, 0.99))}, n={n}, JSON over HTTPS"))
    return rows


def run(quick: bool = False) -> list[Row]:
    """Index latency at scale, a 5 MB feed, traces reading; on a real HTTPS host."""
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock()
        with SimulatedWorld(None, None, cards=CardsOn.NONE, mail=False,
                            dmp=DmpOptions(Path(tmp), clock=clock)) as simulated:
            host = simulated.dmp
            assert host is not None
            t = time.perf_counter()
            patients, password = _seed(host, clock())
            seeded = time.perf_counter() - t
            world = DmpWorld(host, clock)
            try:
                rows = [Row("seed through the storage layer", fmt_time(seeded),
                            f"{PATIENTS:,} records, {PATIENTS * DOCS_PER_PATIENT:,} CDAs")]
                rows += _index(world, patients, quick)
                rows += _feed(world, quick)
                rows += _traces(world, patients, password, quick)
            finally:
                world.close()
    return rows
