"""The virtual terminal's control interface: JSON lines over a UNIX socket or 127.0.0.1 TCP.

One request per line, one answer per line (docs/terminal.md, "Control protocol"):

    {"op": "press", "keys": ["1234", "OK"], "wait": 10}   -> {"ok": true}
    {"op": "screen"}                                       -> {"ok": true, "lines": [...]}
    {"op": "insert", "slot": 1, "profile": "adult"}        -> {"ok": true}
    {"op": "remove", "slot": 0, "mid_command": false}      -> {"ok": true}
    {"op": "mute", "slot": 1, "on": true}                  -> {"ok": true}
    {"op": "status"} / {"op": "heap", "probe": true} / {"op": "wire", "slot": 0}
    anything that fails                                    -> {"ok": false, "error": "..."}

Addresses: "unix:/path", a path with a slash, "tcp:127.0.0.1:PORT" or "127.0.0.1:PORT".
The running terminal writes its pty path and control address to a state file, so
`bifente sim press ...` finds it without arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bifente.simulators.terminal.supervisor import VirtualTerminal

__all__ = ["ControlError", "ControlServer", "TerminalControl", "default_control_address",
           "read_state", "remove_state", "state_path", "write_state"]

MAX_LINE = 64 * 1024  # a request longer than this is refused (a peer controls it)
MAX_CLIENTS = 8


class ControlError(RuntimeError):
    """The virtual terminal refused a request or cannot be reached."""


def _runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir() and os.access(xdg, os.W_OK):
        return Path(xdg)
    return Path(tempfile.gettempdir())


def state_path() -> Path:
    """Where the running virtual terminal writes its addresses (BIFENTE_SIM_TERMINAL wins)."""
    override = os.environ.get("BIFENTE_SIM_TERMINAL")
    if override:
        return Path(override)
    return _runtime_dir() / f"bifente-sim-terminal-{os.getuid()}.json"


def default_control_address() -> str:
    """A UNIX socket beside the state file."""
    return "unix:" + str(state_path().with_suffix(".sock"))


def write_state(pty: str, control: str, path: Path | None = None) -> Path:
    """Record the running terminal (pty path, control address, our pid)."""
    path = path or state_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pty": pty, "control": control, "pid": os.getpid()}) + "\n")
    os.replace(tmp, path)
    return path


def read_state(path: Path | None = None) -> dict[str, object]:
    """The state file of the running terminal; ControlError if there is none."""
    path = path or state_path()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise ControlError("no virtual terminal is running (start `bifente sim terminal`)") \
            from None
    except ValueError as exc:
        raise ControlError(f"unreadable state file {path}: {exc}") from None
    if not isinstance(state, dict):
        raise ControlError(f"unreadable state file {path}")
    return state


def remove_state(path: Path | None = None) -> None:
    """Forget the state file (on exit)."""
    with contextlib.suppress(FileNotFoundError):
        (path or state_path()).unlink()


def _parse(address: str) -> tuple[int, object]:
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    if address.startswith("tcp:"):
        address = address[4:]
    elif "/" in address:
        return socket.AF_UNIX, address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"control address {address!r}: use unix:/path or 127.0.0.1:PORT")
    return socket.AF_INET, (host or "127.0.0.1", int(port))


class ControlServer:
    """Serves the control protocol for a VirtualTerminal in background threads."""

    def __init__(self, terminal: VirtualTerminal, address: str) -> None:
        self.terminal = terminal
        family, where = _parse(address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_UNIX:
            path = Path(str(where))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a stale socket from a terminal that was killed
            sock.bind(str(path))
            os.chmod(path, 0o600)  # only this user presses keys on the terminal
            self.address = f"unix:{path}"
            self._path: Path | None = path
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)  # type: ignore[arg-type]
            host, port = sock.getsockname()[:2]
            self.address = f"{host}:{port}"
            self._path = None
        sock.listen(MAX_CLIENTS)
        self._sock = sock
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="vt-control-server",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting; remove the socket file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._clients.acquire(blocking=False):
                conn.close()  # too many clients at once
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="vt-control-client").start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rwb") as f:
                while True:
                    line = f.readline(MAX_LINE + 1)
                    if not line:
                        return
                    if len(line) > MAX_LINE:
                        f.write(b'{"ok": false, "error": "request too long"}\n')
                        f.flush()
                        return
                    f.write(json.dumps(self.handle(line)).encode() + b"\n")
                    f.flush()
        except OSError:
            return
        finally:
            self._clients.release()

    def handle(self, line: bytes) -> dict[str, object]:
        """Answer one request line."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
            return {"ok": True, **self._op(req)}
        except (ValueError, KeyError, TypeError, TimeoutError, RuntimeError, IndexError) as exc:
            return {"ok": False, "error": str(exc) or type(exc).__name__}

    def _op(self, req: dict[str, object]) -> dict[str, object]:
        vt = self.terminal
        op = req.get("op")
        if op == "status":
            return vt.status()
        if op == "screen":
            return {"lines": vt.screen_lines()}
        if op == "press":
            keys = req.get("keys")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ValueError("keys: a list of key names")
            vt.press(*keys, wait=float(req.get("wait", 10.0)))  # type: ignore[arg-type]
            return {}
        if op in ("insert", "remove", "mute", "wire"):
            slot = int(req["slot"])  # type: ignore[call-overload]
            if slot not in (0, 1):
                raise ValueError(f"no slot {slot}: 0 (CPS) or 1 (Vitale)")
            if op == "insert":
                profile = req.get("profile")
                vt.insert(slot, str(profile) if profile else None)
            elif op == "remove":
                vt.remove(slot, mid_command=bool(req.get("mid_command")))
            elif op == "mute":
                vt.mute(slot, bool(req.get("on", True)))
            else:
                return vt.wire_stats(slot, reset=bool(req.get("reset"))).as_dict()
            return {}
        if op == "heap":
            probe = req.get("probe")
            return vt.heap(probe=None if probe is None else bool(probe),
                           reset=bool(req.get("reset")))
        raise ValueError(f"unknown op {op!r}")


class TerminalControl:
    """Client of the control protocol (what `bifente sim press/screen/...` use)."""

    def __init__(self, address: str | None = None, *, timeout: float = 30.0) -> None:
        if address is None:
            address = str(read_state().get("control", ""))
        self.address = address
        self.timeout = timeout

    def request(self, op: str, **args: object) -> dict[str, object]:
        """Send one request; the answer's fields, or ControlError."""
        family, where = _parse(self.address)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(where)  # type: ignore[arg-type]
                with sock.makefile("rwb") as f:
                    f.write(json.dumps({"op": op, **args}).encode() + b"\n")
                    f.flush()
                    line = f.readline(MAX_LINE + 1)
        except OSError as exc:
            raise ControlError(f"cannot reach the virtual terminal at {self.address}: "
                               f"{exc.strerror or exc}") from None
        if not line:
            raise ControlError("the virtual terminal closed the connection")
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise ControlError(f"the virtual terminal answered {line[:80]!r}, not an object")
        if not answer.pop("ok", False):
            raise ControlError(str(answer.get("error", "refused")))
        return answer

    def press(self, *keys: str, wait: float = 10.0) -> None:
        """Press keys on the terminal."""
        self.request("press", keys=list(keys), wait=wait)

    def screen(self) -> list[str]:
        """The display lines."""
        return [str(x) for x in self.request("screen")["lines"]]  # type: ignore[attr-defined]

    def insert(self, slot: int, profile: str | None = None) -> None:
        """Insert a card."""
        self.request("insert", slot=slot, profile=profile)

    def remove(self, slot: int) -> None:
        """Pull a card."""
        self.request("remove", slot=slot)

    def status(self) -> dict[str, object]:
        """Everything the terminal reports."""
        return self.request("status")
