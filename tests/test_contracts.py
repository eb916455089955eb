"""Copies of a contract that cannot import it (firmware, MicroPython test support) match it."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bifente.contracts.iso7816_3 import DI_TABLE, FI_TABLE, FMAX_HZ, t1_edc

ROOT = Path(__file__).resolve().parent.parent


def _constants(path: Path) -> dict[str, object]:
    """Module-level NAME = <literal> assignments of a source file, evaluated safely."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def _function(path: Path, name: str) -> object:
    """One plain function of a source file, compiled alone on CPython."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace: dict[str, object] = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


def test_firmware_fi_di_tables_are_the_contracts() -> None:
    firmware = _constants(ROOT / "firmware" / "iso7816.py")
    assert firmware["FI_TABLE"] == FI_TABLE
    assert firmware["DI_TABLE"] == DI_TABLE
    assert tuple(k * 1000 for k in firmware["FMAX_KHZ"]) == FMAX_HZ  # type: ignore[attr-defined]


@given(st.binary(max_size=260), st.booleans())
def test_micropython_test_support_edc_is_the_contracts(block: bytes, crc: bool) -> None:
    edc = _function(ROOT / "tests" / "firmware" / "mp" / "support.py", "edc")
    assert edc(block, crc) == t1_edc(block, crc)  # type: ignore[operator]


def test_t1_edc_known_values() -> None:
    # LRC of NAD PCB LEN = 00 C1 01 with INF FE (S(IFS request), ISO 7816-3 §11.6.2.3 example).
    assert t1_edc(bytes.fromhex("00C101FE")) == bytes.fromhex("3E")
    # CRC-16/X.25 family as ISO/IEC 13239 (reflected 8408, preset FFFF, no final xor): "123456789".
    assert t1_edc(b"123456789", crc=True) == bytes.fromhex("6F91")


def test_the_literal_reader_sees_a_drifted_copy(tmp_path: Path) -> None:
    drifted = tmp_path / "iso7816.py"
    drifted.write_text("FI_TABLE = (372, 373)\nx = f()\n")
    assert _constants(drifted) == {"FI_TABLE": (372, 373)}


def test_the_advert_publishes_exactly_the_contracts_txt_keys() -> None:
    from bifente.contracts import mdns
    from bifente.edged.discovery import Advert

    advert = Advert(name="bifente-test", port=8443, addresses=("127.0.0.1",),
                    fingerprint="ab" * 32, capabilities=("cps",), model="bifente-t1")
    txt = advert.txt()
    assert tuple(txt) == mdns.TXT_KEYS
    assert txt[mdns.TXT_VERSION] == mdns.PROTOCOL_VERSION
    assert txt[mdns.TXT_FINGERPRINT] == mdns.FINGERPRINT_PREFIX + "ab" * 32


def test_dmp_reasons_edged_passes_on_are_the_hosts() -> None:
    # DMP_ERROR's data.reason is the host's code (docs/dmp-api.md, "Refusal reasons"), except
    # the few edged decides itself before or instead of asking the host.
    from bifente.client.codes import DMP_ERROR
    from bifente.contracts.dmp import Reason
    from bifente.edged.api.contract import ERRORS

    own = {"host_unreachable", "host_untrusted", "dmp_not_configured"}
    (dmp,) = [kind for kind in ERRORS if kind.code == DMP_ERROR]
    assert set(dmp.reasons) - own <= {r.value for r in Reason}


def test_the_dmp_host_answers_with_the_contracts_statuses() -> None:
    from bifente.contracts.dmp import Reason, status_of
    from bifente.simulators.dmp import codes

    assert codes.Reason is Reason and codes.status_of is status_of
    assert status_of(Reason.CONSENT_MISSING) == 403 and status_of(Reason.DMP_EXISTS) == 409
