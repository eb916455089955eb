"""The DMP host's CDA R2 checker (docs/dmp-api.md, D7): it lists problems, it never raises."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.simulators.dmp.cda"]):
    from bifente.simulators.dmp import cda

from fuzz.common import main

INS = "279035121518989"
TYPES = frozenset({"11488-4", "11490-0", "11502-2"})


def target(data: bytes) -> None:
    """check_cda on any bytes: a result whose problems say why, never an exception."""
    result = cda.check_cda(data, INS, TYPES)
    if not result.ok and not result.problems:
        raise AssertionError("refused without a reason")


def seeds() -> Iterator[bytes]:
    """Conforming documents (structured, PDF, text) and the XML corner cases of D3."""
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    yield cda.build_document(INS, "1.2.250.1.213.1.4.10", "11488-4", "Compte rendu",
                             author_id="810001000101", when=when, document_id="1.2.3")
    yield cda.build_document(INS, "1.2.250.1.213.1.4.8", "11490-0", "Sortie", author_id="81",
                             pdf=b"%PDF-1.4\n%%EOF", when=when, document_id="1.2.4")
    yield cda.build_document(INS, "1.2.250.1.213.1.4.8", "11502-2", "Bio", author_id="81",
                             text="ok", media_type="text/plain", when=when, document_id="1.2.5")
    yield b'<?xml version="1.0" encoding="U"?><a/>'
    yield b'<?xml version="1.0" encoding="UTF-7"?><a/>'
    yield b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>"


if __name__ == "__main__":
    main("cda", target, (), seeds)
