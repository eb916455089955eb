"""The bodies of the pages' POSTed forms: urlencoded fields, or multipart with file uploads
(HTML Living Standard §4.10.21.7-8, RFC 7578)."""

from __future__ import annotations

import email.parser
import email.policy
from typing import NamedTuple
from urllib.parse import parse_qs

from bifente.simulators.dmp.codes import Reason, Refused

__all__ = ["Form", "Upload", "parse_form"]


class Upload(NamedTuple):
    """A file sent with a multipart form."""

    filename: str
    content_type: str
    data: bytes


Form = dict[str, str | Upload]


def parse_form(content_type: str, raw: bytes) -> Form:
    """The fields of a form body (the last value of a repeated field); Refused if unreadable."""
    fields: Form = {}
    if content_type.startswith("multipart/form-data"):
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
        if not msg.is_multipart():
            raise Refused(Reason.BAD_REQUEST, "Formulaire illisible.")
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)  # bytes: a part is never multipart
            if not isinstance(payload, bytes):
                payload = b""
            filename = part.get_filename()
            if filename is not None:
                fields[name] = Upload(filename, part.get_content_type(), payload)
            else:
                fields[name] = payload.decode("utf-8", "replace")
    else:
        for key, values in parse_qs(raw.decode("utf-8", "replace"),
                                    keep_blank_values=True).items():
            fields[key] = values[-1]
    return fields
