"""Chunked uploads: a payload larger than one message goes as begin / chunk / commit.

`upload.begin` announces the size and SHA-256 of the payload and gets an id; `upload.chunk`
sends it in order, at most `chunk_size` bytes (base64) per message, each written to a file
under the state directory as it arrives (never the whole payload in memory); `upload.commit`
checks the size and the digest. A method that takes a large payload (mail.send's
attachments, dmp.feed's CDA) then names the committed upload by `upload_id` instead of
carrying the bytes; the upload is used once. Only the client that began an upload may use
it; one not used is deleted when the connection that began it closes, and in any case
UPLOAD_TTL seconds after it began.

The chunks are health data (a CDA, an attachment), so they are not written in clear
(docs/security.md, "Data at rest"): each upload has its own AES-256-GCM key, held in memory
only, and each chunk is sealed with it. An upload does not outlive the daemon (the directory
is emptied at start), so a key that dies with the process is all it needs: a copy of the
state directory holds only ciphertext nobody can open.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
import struct
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bifente.client.codes import STORAGE_FULL, TOO_LARGE
from bifente.edged.api.jsonrpc import INVALID_PARAMS, RpcError
from bifente.edged.api.method import INT, STR, Method, b64_param, obj

if TYPE_CHECKING:
    from bifente.edged.api.context import ApiContext, Caller
    from bifente.edged.state.space import SpaceGuard

__all__ = ["CHUNK_SIZE", "MAX_UPLOAD", "METHODS", "UPLOAD_ID", "Uploads", "claim",
           "release_connection"]

MAX_UPLOAD = 64 * 1024 * 1024  # one payload: a 25 MiB attachment, a CDA with a 20 MB PDF
CHUNK_SIZE = 512 * 1024  # bytes per upload.chunk: 683 KiB of base64, under the 1 MiB message
MAX_OPEN = 8  # uploads under way per client
UPLOAD_TTL = 600.0  # s from begin to use
UPLOAD_ID = {"type": "string", "pattern": r"^[0-9a-f]{32}$",
             "description": "a committed upload (upload.begin / chunk / commit)"}
_SHA256 = {"type": "string", "pattern": r"^[0-9a-f]{64}$", "description": "hex SHA-256"}


@dataclass
class _Upload:
    owner: str
    size: int
    sha256: str
    path: Path
    created: float
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    committed: bool = False
    connection: object = None  # the connection that began it: deleted when that one closes
    key: AESGCM = field(default_factory=lambda: AESGCM(AESGCM.generate_key(bit_length=256)))
    chunks: int = 0
    # upload.chunk runs in worker threads, several at once for one connection: the offset
    # check, the sealing (the nonce is the chunk count), the write and the digest are one
    # step under this lock, or two chunks could both pass the check and share a nonce
    # under the same key (AES-GCM then leaks their XOR and its authentication key).
    lock: threading.Lock = field(default_factory=threading.Lock)
    gone: bool = False  # cancelled (or used): a chunk that waited on the lock is refused

    def seal(self, data: bytes) -> bytes:
        """One chunk as written: length, then AES-256-GCM under this upload's own key (the
        nonce is the chunk's number: unique for this key)."""
        nonce = self.chunks.to_bytes(12, "big")
        self.chunks += 1
        sealed = self.key.encrypt(nonce, data, self.path.name.encode())
        return struct.pack(">I", len(sealed)) + sealed

    def open_all(self) -> bytearray:
        """The payload, every chunk opened in order."""
        # One buffer of the payload's size, filled a chunk at a time: no second copy (a
        # bytes() of it would double the peak for a 25 MB attachment, docs/benchmarks.md L).
        out = bytearray(self.size)
        at = 0
        with self.path.open("rb") as sealed:
            for number in range(self.chunks):
                (size,) = struct.unpack(">I", sealed.read(4))
                plain = self.key.decrypt(number.to_bytes(12, "big"), sealed.read(size),
                                         self.path.name.encode())
                out[at:at + len(plain)] = plain
                at += len(plain)
        if at != self.size:  # commit checked size and digest: a changed file is a fault
            raise OSError(f"upload file {self.path.name} holds {at} bytes, not {self.size}")
        return out


class Uploads:
    """The uploads of one daemon: one file each in `directory` (0700), ids never reused."""

    def __init__(self, directory: Path, clock: Any = time.monotonic,
                 space: SpaceGuard | None = None) -> None:
        self.directory = directory
        self._clock = clock
        self._space = space
        self._uploads: dict[str, _Upload] = {}
        self._guard = threading.Lock()  # the dict: changed from the loop and worker threads
        # Files left by an earlier run belong to no connection any more.
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, mode=0o700)

    def begin(self, owner: str, size: int, sha256: str, connection: object = None) -> str:
        """A new upload of `size` bytes whose SHA-256 is `sha256`; its id. Begun on
        `connection`, it is deleted when that connection closes (`release`)."""
        self.expire()
        if self._space is not None:  # the whole payload must fit, before a byte is taken
            self._space.check("upload", size)
        with self._guard:
            if sum(1 for u in self._uploads.values() if u.owner == owner) >= MAX_OPEN:
                raise RpcError(INVALID_PARAMS, f"at most {MAX_OPEN} uploads under way per "
                               "client", "too_many_uploads")
            upload_id = secrets.token_hex(16)
            path = self.directory / upload_id
            path.touch(mode=0o600)
            self._uploads[upload_id] = _Upload(owner, size, sha256, path, self._clock(),
                                               connection=connection)
        return upload_id

    def _get(self, owner: str, upload_id: str) -> _Upload:
        with self._guard:
            upload = self._uploads.get(upload_id)
        if upload is None or upload.owner != owner:  # another client's is not named either
            raise _unknown(upload_id)
        return upload

    def chunk(self, owner: str, upload_id: str, offset: int, data: bytes) -> int:
        """Append the next chunk (offset must be what was received); bytes received so far."""
        upload = self._get(owner, upload_id)
        with upload.lock:
            if upload.gone:  # cancelled while this chunk waited
                raise _unknown(upload_id)
            if upload.committed:
                raise RpcError(INVALID_PARAMS, "the upload is already committed",
                               "upload_committed")
            if offset != upload.received:
                raise RpcError(INVALID_PARAMS, f"expected offset {upload.received}, not "
                               f"{offset}", "bad_offset", expected=upload.received)
            if upload.received + len(data) > upload.size:
                raise RpcError(TOO_LARGE, f"more than the {upload.size} bytes announced",
                               "too_large")
            if self._space is not None:  # refused whole, never half appended: it is resent
                self._space.check("upload", len(data))
            with upload.path.open("ab") as out:
                out.write(upload.seal(data))
            upload.digest.update(data)
            upload.received += len(data)
            return upload.received

    def commit(self, owner: str, upload_id: str) -> None:
        """Check the size and the SHA-256 announced at begin (the upload is dropped if wrong)."""
        upload = self._get(owner, upload_id)
        with upload.lock:  # not while a chunk is being written
            if upload.gone:
                raise _unknown(upload_id)
            if upload.received != upload.size:
                raise RpcError(INVALID_PARAMS, f"received {upload.received} of {upload.size} "
                               "bytes", "upload_incomplete", received=upload.received)
            if upload.digest.hexdigest() != upload.sha256:
                self._drop(upload_id, upload)
                raise RpcError(INVALID_PARAMS, "the data does not match the SHA-256 "
                               "announced", "digest_mismatch")
            upload.committed = True

    def take(self, owner: str, upload_id: str, limit: int) -> bytearray:
        """The committed upload's bytes, once (its file is deleted); over `limit`: too_large."""
        upload = self._get(owner, upload_id)
        with upload.lock:  # used once: a second take waits, then finds it gone
            if upload.gone:
                raise _unknown(upload_id)
            if not upload.committed:
                raise RpcError(INVALID_PARAMS, "commit the upload first", "upload_incomplete",
                               received=upload.received)
            if upload.size > limit:
                raise RpcError(TOO_LARGE, f"upload of {upload.size} bytes, over the limit of "
                               f"{limit}", "too_large", size=upload.size, limit=limit)
            try:
                return upload.open_all()
            finally:
                self._drop(upload_id, upload)

    def cancel(self, owner: str, upload_id: str) -> None:
        """Forget the upload and delete its file."""
        upload = self._get(owner, upload_id)
        with upload.lock:  # after a chunk being written, not under it
            if upload.gone:
                raise _unknown(upload_id)
            self._drop(upload_id, upload)

    def _drop(self, upload_id: str, upload: _Upload) -> None:
        """Forget the upload and delete its file (its lock held)."""
        upload.gone = True
        with self._guard:
            self._uploads.pop(upload_id, None)
        upload.path.unlink(missing_ok=True)

    def release(self, connection: object) -> int:
        """Delete the uploads begun on `connection` (it closed): those not used yet, committed
        or not, go with it, not UPLOAD_TTL later; the client's other connections keep theirs.
        How many were deleted."""
        with self._guard:
            mine = [(upload_id, upload) for upload_id, upload in self._uploads.items()
                    if upload.connection is not None and upload.connection is connection]
        return sum(self._discard(upload_id, upload) for upload_id, upload in mine)

    def expire(self) -> None:
        """Delete uploads older than UPLOAD_TTL."""
        now = self._clock()
        with self._guard:
            old = [(upload_id, upload) for upload_id, upload in self._uploads.items()
                   if now - upload.created > UPLOAD_TTL]
        for upload_id, upload in old:
            self._discard(upload_id, upload)

    def _discard(self, upload_id: str, upload: _Upload) -> bool:
        """Drop the upload unless a worker used or dropped it meanwhile; whether it did."""
        with upload.lock:
            if upload.gone:
                return False
            self._drop(upload_id, upload)
            return True


def _unknown(upload_id: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"no upload {upload_id!r} under way", "unknown_upload")


_REGISTRY: weakref.WeakKeyDictionary[ApiContext, Uploads] = weakref.WeakKeyDictionary()


def uploads_of(daemon: ApiContext) -> Uploads:
    """The daemon's uploads (made on first use, under its state directory)."""
    uploads = _REGISTRY.get(daemon)
    if uploads is None:
        uploads = _REGISTRY[daemon] = Uploads(Path(daemon.config.state_dir) / "uploads",
                                              space=daemon.space)
    return uploads


async def release_connection(daemon: ApiContext, conn: object) -> None:
    """The connection `conn` closed: delete the uploads it began and did not use."""
    uploads = _REGISTRY.get(daemon)  # none made yet: nothing to delete, no directory made
    if uploads is not None:  # in a thread: it may wait for a chunk still being written
        await asyncio.to_thread(uploads.release, conn)


async def claim(daemon: ApiContext, conn: Caller, upload_id: str, limit: int) -> bytearray:
    """The bytes of a committed upload of this client, for the method that uses it."""
    return await asyncio.to_thread(uploads_of(daemon).take, conn.client_id, upload_id, limit)


async def upload_begin(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """upload.begin."""
    # In a thread: expiring old uploads waits for a chunk of theirs being written.
    upload_id = await asyncio.to_thread(uploads_of(daemon).begin, conn.client_id,
                                        params["size"], params["sha256"], conn)
    return {"upload_id": upload_id, "chunk_size": CHUNK_SIZE}


async def upload_chunk(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """upload.chunk."""
    data = b64_param(params["data"], "data", CHUNK_SIZE)
    received = await asyncio.to_thread(uploads_of(daemon).chunk, conn.client_id,
                                       params["upload_id"], params["offset"], data)
    return {"received": received}


async def upload_commit(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """upload.commit."""
    # In a thread: it waits for a chunk being written (the upload's lock), never the loop.
    await asyncio.to_thread(uploads_of(daemon).commit, conn.client_id, params["upload_id"])
    return {"upload_id": params["upload_id"], "state": "committed"}


async def upload_cancel(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """upload.cancel."""
    await asyncio.to_thread(uploads_of(daemon).cancel, conn.client_id, params["upload_id"])
    return {"upload_id": params["upload_id"], "state": "cancelled"}


METHODS: list[Method] = [
    Method("upload.begin", upload_begin, "Start a chunked upload, for a payload larger than "
           "one message (mail.send attachments, dmp.feed CDA): give its size and SHA-256, "
           "then send it with upload.chunk in order, `chunk_size` bytes at most each, and "
           "finish with upload.commit, which checks the size and the digest. The method that "
           f"uses it takes `upload_id` instead of the data, once. At most {MAX_OPEN} uploads "
           f"under way per client, {MAX_UPLOAD} bytes each; one not used is deleted when "
           f"the connection that began it closes (another connection of the same client "
           f"cannot keep it), and in any case {UPLOAD_TTL:.0f} s after upload.begin.",
           params=obj({"size": {"type": "integer", "minimum": 1, "maximum": MAX_UPLOAD},
                       "sha256": _SHA256}, ("size", "sha256")),
           result=obj({"upload_id": STR, "chunk_size": INT}, ("upload_id", "chunk_size")),
           errors=(STORAGE_FULL,)),
    Method("upload.chunk", upload_chunk, "The next part of an upload: `offset` is the number "
           "of bytes sent before it (a chunk out of order is refused with `bad_offset` and "
           "`data.expected`), `data` at most `chunk_size` bytes in base64; written to disk at "
           "once.",
           params=obj({"upload_id": UPLOAD_ID, "offset": {"type": "integer", "minimum": 0},
                       "data": {"type": "string", "description": "base64",
                                "maxLength": 4 * (CHUNK_SIZE // 3 + 1)}},
                      ("upload_id", "offset", "data")),
           result=obj({"received": INT}, ("received",)), errors=(STORAGE_FULL,)),
    Method("upload.commit", upload_commit, "Finish an upload: every byte announced arrived "
           "(`upload_incomplete` otherwise) and its SHA-256 is the one announced "
           "(`digest_mismatch`: the upload is dropped).",
           params=obj({"upload_id": UPLOAD_ID}, ("upload_id",)),
           result=obj({"upload_id": STR, "state": {"type": "string", "enum": ["committed"]}},
                      ("upload_id", "state"))),
    Method("upload.cancel", upload_cancel, "Drop an upload and its data.",
           params=obj({"upload_id": UPLOAD_ID}, ("upload_id",)),
           result=obj({"upload_id": STR, "state": {"type": "string", "enum": ["cancelled"]}},
                      ("upload_id", "state"))),
]
