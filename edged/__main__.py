"""`edged`: the bifente edge daemon (foreground; systemd Type=notify in production)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bifente.edged.cli.argtypes import port
from bifente.edged.config import ConfigError, load_config
from bifente.edged.early import begin
from bifente.edged.shutdown import ExitGuard
from bifente.edged.simulation import SimulatorsMissing, require_simulators, simulated_world
from bifente.edged.state.audit import AuditError
from bifente.edged.state.keystore import KeystoreError
from bifente.edged.state.sqlite import StateFileError
from bifente.edged.version import VERSION

if TYPE_CHECKING:
    from bifente.edged.simulation import SimulatedWorld

__all__ = ["main"]

log = logging.getLogger("bifente.edged")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edged", description="bifente edge daemon")
    parser.add_argument("--version", action="version", version=f"edged {VERSION}")
    parser.add_argument("--config", type=Path, help="TOML configuration file "
                        "(default: built-in defaults; /etc/bifente/edged.toml on a Pi)")
    parser.add_argument("--simulate", action="store_true",
                        help="run on simulated hardware: the virtual terminal (firmware on the "
                        "MicroPython unix port) with simulated cards")
    parser.add_argument("--simulate-pcsc", action="store_true",
                        help="simulate PC/SC readers instead: simulated cards in pcscd via vpcd")
    parser.add_argument("--cps", default="gp", help="with --simulate: CPS profile")
    parser.add_argument("--vitale", default="family", help="with --simulate: Vitale profile")
    parser.add_argument("--port", type=port, help="override the listening port (0-65535)")
    parser.add_argument("--state-dir", type=Path, help="override the state directory")
    parser.add_argument("--no-mdns", action="store_true", help="do not announce on mDNS")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if args.simulate and args.simulate_pcsc:
        parser.error("choose one of --simulate (virtual terminal) and --simulate-pcsc")
    return args


async def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.log_level is None:
        logging.getLogger().setLevel(config.log_level.upper())
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.state_dir is not None:
        overrides["state_dir"] = args.state_dir
    if args.no_mdns:
        overrides["mdns"] = False
    stack = contextlib.ExitStack()
    try:  # whatever the simulation started is stopped if a later step fails
        if args.simulate or args.simulate_pcsc:
            # Only the simulate entry point wires the simulators in (README.md, "Layout").
            if args.state_dir is None and args.config is None:
                overrides["state_dir"] = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="edged-sim-")))
                # The fallback state key, kept apart from the state like on a real install.
                overrides["state_key_file"] = str(Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="edged-sim-key-"))) / "state.key")
            world = simulated_world(
                "edged --simulate" if args.simulate else "edged --simulate-pcsc",
                args.cps, args.vitale, cards="pcsc" if args.simulate_pcsc else "terminal",
                mail=not config.mail, dmp=not config.dmp,
                # the control socket and state file `bifente sim press | screen` find
                terminal={"control": True, "record": True})
            await asyncio.to_thread(world.start)
            stack.callback(world.stop)
            overrides.update(world.edged_overrides())
            _announce(world, args)
    except BaseException:
        stack.close()
        raise
    config = config.with_overrides(**overrides)
    with stack:
        # The name is probed while the daemon is imported, off the loop (edged/early.py).
        early = await begin(config)
        try:
            daemon_module = await asyncio.to_thread(importlib.import_module, "bifente.edged.daemon")
            daemon = daemon_module.Daemon(config)
        except BaseException:
            if early is not None:
                await early.cancel()
            raise
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        guard = ExitGuard()  # SIGTERM to exit is bounded (edged/shutdown.py)

        def on_signal() -> None:
            guard.arm()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await daemon.start(early)
        print(f"edged {VERSION}: wss://{config.host}:{daemon.server.port} "
              f"fingerprint sha256:{daemon.keystore.fingerprint}", flush=True)
        try:
            await stop.wait()
        finally:
            guard.arm()  # also when the wait ends by an error
            await daemon.stop()
            guard.stopped()
    return 0


def _announce(world: SimulatedWorld, args: argparse.Namespace) -> None:
    """Print where the simulated parts listen (tests and `bifente demo` read these lines)."""
    if world.terminal is not None:
        print(f"virtual terminal: {world.terminal.pty_path} control {world.control_address}",
              flush=True)
    log.info("simulated cards: CPS %r, Vitale %r", args.cps, args.vitale)
    if world.mail is not None:  # the reference mail operator: cabinet.test, chu.test, labo.test
        info = world.mail.info
        cabinet = info.domains["cabinet.test"]
        print(f"mail operator: cabinet.test smtp://{info.host}:{cabinet.submission} "
              f"pop3s://{info.host}:{cabinet.pop3s}, directory {info.directory_url}; "
              f"addresses {', '.join(world.mail.addresses('cabinet.test'))} "
              f"(test password {world.mail_password!r})", flush=True)
    if world.dmp is not None:  # edged enrolls its consent key with the admin token
        print(f"DMP host: {world.dmp.url} (test mode, data {world.dmp.data_dir}, "
              f"admin token {world.dmp.admin_token})", flush=True)


def _is_profile_error(exc: BaseException) -> bool:
    """An unknown or bad simulated card profile (only with --simulate; simulators optional)."""
    try:
        from bifente.simulators.profiles import ProfileError
    except ImportError:
        return False
    return isinstance(exc, ProfileError)


def main(argv: list[str] | None = None) -> int:
    """Run the daemon until SIGTERM / SIGINT."""
    args = _parse(argv)
    if args.simulate or args.simulate_pcsc:
        try:
            require_simulators("edged --simulate" if args.simulate else "edged --simulate-pcsc")
        except SimulatorsMissing as exc:
            print(f"edged: {exc}", file=sys.stderr)
            return 2
    level = (args.log_level or "info").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_run(args))
    except ConfigError as exc:
        print(f"edged: configuration error: {exc}", file=sys.stderr)
        return 2
    except (StateFileError, AuditError, KeystoreError) as exc:
        print(f"edged: state error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the edge: one line and an exit code, never a traceback
        if _is_profile_error(exc):
            print(f"edged: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"edged: {where}{exc.strerror or exc}", file=sys.stderr)
            return 1
        log.debug("failed", exc_info=exc)
        print(f"edged: {type(exc).__name__}: {exc} (run with --log-level debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
