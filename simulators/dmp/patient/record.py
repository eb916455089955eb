"""The patient's record as a whole: reading it, its settings (D1, D13, D16), the professionals
blocked (D18), its traces (D19), and closing it. Each operation is traced once."""

from __future__ import annotations

import re

from bifente.simulators.dmp.codes import Action, Outcome, Reason, Refused
from bifente.simulators.dmp.patient.base import PatientBase
from bifente.simulators.dmp.patient.views import Fields, PatientRecord
from bifente.simulators.dmp.storage import Trace
from bifente.simulators.dmp.tracing import trace_window
from bifente.simulators.dmp.visibility import flag

__all__ = ["RecordOps"]

NATIONAL_ID = re.compile(r"^(8\d{11}|0\d{9})$")  # 8 + RPPS, or 0 + ADELI (docs/cards.md)
_SETTINGS = {"oppose_bris_de_glace": "oppose_bris_de_glace",  # field -> storage column
             "oppose_centre_15": "oppose_centre_15",
             "occupational_express_consent": "occupational_consent"}
DOCTOR = "10"  # the TRE_G15 profession code of doctors (docs/cards.md)


class RecordOps(PatientBase):
    """The patient's operations on their record as a whole."""

    def record(self, token: str | None) -> PatientRecord:
        """The record: status, settings, blocked professionals, emergency accesses."""
        with self._acting(token, Action.PATIENT_SETTINGS) as (_ctx, session):
            return self._patient_record(session)

    def change_settings(self, token: str | None, changes: Fields) -> PatientRecord:
        """Oppositions (D13), occupational express consent (D1), chosen doctor (D16)."""
        with self._acting(token, Action.PATIENT_SETTINGS) as (ctx, session):
            self._record(session, writable=True)
            columns: dict[str, object] = {}
            for name, value in changes.items():
                if name in _SETTINGS:
                    columns[_SETTINGS[name]] = flag(value, name)
                elif name == "chosen_doctor":
                    if value is not None:
                        entry = self.directory.professionals.get(str(value))
                        if entry is None or entry.profession != DOCTOR:
                            raise Refused(Reason.UNKNOWN_PROFESSIONAL,
                                          "the chosen doctor must be a doctor in the directory")
                    columns["chosen_doctor"] = value
                else:
                    raise Refused(Reason.BAD_REQUEST, f"unknown setting {name!r}")
            if not columns:
                raise Refused(Reason.BAD_REQUEST, "no setting given")
            with self.storage.transaction():
                self.storage.update_settings(session.ins, **columns)
                self.tracer.trace(ctx, Outcome.OK)
            return self._patient_record(session)

    def block(self, token: str | None, fields: Fields) -> PatientRecord:
        """Block a professional (D18): national_id."""
        with self._acting(token, Action.PATIENT_BLOCK) as (ctx, session):
            self._record(session, writable=True)
            national_id = fields.get("national_id")
            if not isinstance(national_id, str) or not NATIONAL_ID.match(national_id):
                raise Refused(Reason.BAD_REQUEST, "national_id: 8 + RPPS (12) or 0 + ADELI (10)")
            with self.storage.transaction():
                self.storage.block(session.ins, national_id, self.clock())
                self.tracer.trace(ctx, Outcome.OK)
            return self._patient_record(session)

    def unblock(self, token: str | None, national_id: str) -> PatientRecord:
        """Lift a block (D18)."""
        with self._acting(token, Action.PATIENT_UNBLOCK) as (ctx, session):
            self._record(session, writable=True)
            with self.storage.transaction():
                if not self.storage.unblock(session.ins, national_id):
                    raise Refused(Reason.NOT_FOUND, "this professional is not blocked")
                self.tracer.trace(ctx, Outcome.OK)
            return self._patient_record(session)

    def traces(self, token: str | None, *, limit: str | int | None = None,
               before: str | int | None = None) -> list[Trace]:
        """Every access and refusal on the record, newest first (D19); this read is traced
        after it (so it is not in its own answer)."""
        with self._acting(token, Action.TRACES) as (ctx, session):
            self._record(session)
            count, below = trace_window(limit, before)
            traces = self.storage.traces(session.ins, limit=count, before=below)
            self.tracer.trace(ctx, Outcome.OK)
            return traces

    def close(self, token: str | None, fields: Fields) -> PatientRecord:
        """Close the record (kept, read-only for the patient, closed to professionals):
        confirm must be true."""
        with self._acting(token, Action.CLOSE) as (ctx, session):
            self._record(session, writable=True)
            if fields.get("confirm") is not True:
                raise Refused(Reason.BAD_REQUEST, 'send {"confirm": true} to close the record')
            with self.storage.transaction():
                self.storage.close_dmp(session.ins, self.clock())
                self.tracer.trace(ctx, Outcome.OK)
            return self._patient_record(session)
