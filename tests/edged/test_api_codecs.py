"""JSON-RPC parsing, schema checks, config loading, display text fitting, rate limiting."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifente.edged.api import jsonrpc
from bifente.edged.api.methods import METHODS
from bifente.edged.api.schema import SchemaError, empty_matches, validate
from bifente.edged.api.server import TokenBucket
from bifente.edged.config import Config, ConfigError, load_config
from bifente.edged.readers.ui import DISPLAY_COLUMNS, DISPLAY_LINES, fit_lines


def test_parse_valid_request_and_notification() -> None:
    r = jsonrpc.parse_message('{"jsonrpc":"2.0","id":7,"method":"system.info"}')
    assert (r.method, r.params, r.id, r.is_notification) == ("system.info", {}, 7, False)
    n = jsonrpc.parse_message('{"jsonrpc":"2.0","method":"x","params":{"a":1}}')
    assert n.is_notification and n.params == {"a": 1}


@pytest.mark.parametrize(("text", "code", "reason"), [
    ("{", jsonrpc.PARSE_ERROR, "parse_error"),
    ("[]", jsonrpc.INVALID_REQUEST, "batch_not_supported"),
    ('{"jsonrpc":"1.0","method":"x"}', jsonrpc.INVALID_REQUEST, "invalid_request"),
    ('{"jsonrpc":"2.0","method":""}', jsonrpc.INVALID_REQUEST, "invalid_request"),
    ('{"jsonrpc":"2.0","method":"x","id":true}', jsonrpc.INVALID_REQUEST, "invalid_request"),
    ('{"jsonrpc":"2.0","method":"x","params":[1]}', jsonrpc.INVALID_PARAMS, "invalid_params"),
])
def test_parse_errors(text: str, code: int, reason: str) -> None:
    with pytest.raises(jsonrpc.RpcError) as exc:
        jsonrpc.parse_message(text)
    assert exc.value.code == code and exc.value.data["reason"] == reason


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_rpc_error(raw: bytes) -> None:
    with contextlib.suppress(jsonrpc.RpcError):
        jsonrpc.parse_message(raw)


def test_responses_are_json_rpc() -> None:
    ok = json.loads(jsonrpc.result_response(1, {"a": 1}))
    assert ok == {"jsonrpc": "2.0", "id": 1, "result": {"a": 1}}
    err = json.loads(jsonrpc.error_response(2, jsonrpc.RpcError(-32001, "no", "missing_scope",
                                                                scopes=["x"])))
    assert err["error"] == {"code": -32001, "message": "no",
                            "data": {"reason": "missing_scope", "scopes": ["x"]}}


def test_schema_checks() -> None:
    params = METHODS["cps.sign"].params
    validate({"data": "AAAA"}, params)
    for bad, needle in [({}, "params.data: required"), ({"data": 1}, "expected string"),
                        ({"data": "AA", "pin": "1234"}, "unknown field 'pin'"),
                        ({"data": "AA", "key": "x"}, "must be one of")]:
        with pytest.raises(SchemaError, match=needle):
            validate(bad, params)


def test_calls_without_params_skip_the_schema_only_where_empty_params_are_valid() -> None:
    # dispatch does not run the validator on {} where empty_matches says it would pass.
    skipped = set()
    for method in METHODS.values():
        try:
            validate({}, method.params)
            valid = True
        except SchemaError:
            valid = False
        if empty_matches(method.params):
            assert valid, method.name
            skipped.add(method.name)
    assert {"system.info", "readers.list"} <= skipped
    assert not {"cps.sign", "dmp.feed"} & skipped  # a required member; alternatives
    assert not empty_matches({"anyOf": [{"type": "object"}]})


def test_no_method_accepts_a_pin() -> None:
    for method in METHODS.values():
        text = json.dumps(method.params).lower()
        assert "pin\"" not in text and "puk" not in text and "password" not in text, method.name


def test_only_pairing_is_open_to_unpaired_clients() -> None:
    assert {m.name for m in METHODS.values() if m.unpaired} == {"pair.begin", "pair.complete",
                                                                "rpc.discover"}


def test_config_defaults_and_file(tmp_path: Path) -> None:
    assert load_config(None).port == Config().port
    path = tmp_path / "edged.toml"
    path.write_text('[server]\nport = 9443\nidle_timeout = 10\n[state]\nstate_dir = "/tmp/x"\n'
                    '[discovery]\nmdns_interfaces = ["127.0.0.1"]\n')
    config = load_config(path)
    assert (config.port, config.idle_timeout, str(config.state_dir)) == (9443, 10.0, "/tmp/x")
    assert config.mdns_interfaces == ("127.0.0.1",)


@pytest.mark.parametrize(("body", "needle"), [
    ("[nope]\nx = 1\n", "unknown section"),
    ("[server]\nprot = 1\n", "unknown setting server.prot"),
    ('[server]\nport = "x"\n', "port must be int"),
    ("[server]\nport = 70000\n", "port must be"),
    ("[server]\nport = true\n", "port must be int"),
    ('[log]\nlog_level = "loud"\n', "log_level"),
    ("[server\n", "edged.toml"),
])
def test_config_errors_are_clear(tmp_path: Path, body: str, needle: str) -> None:
    path = tmp_path / "edged.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


@given(st.text(max_size=2000))
def test_fit_lines_caps_what_a_peer_sends(text: str) -> None:
    lines = fit_lines(text)
    assert len(lines) <= DISPLAY_LINES and all(len(x) <= DISPLAY_COLUMNS for x in lines)
    assert all(" " <= ch <= "~" for line in lines for ch in line), lines


def test_fit_lines_wraps_words() -> None:
    # 16 columns: the SSD1306's 128 px with the firmware's 8 x 8 font.
    assert DISPLAY_COLUMNS == 16 and DISPLAY_LINES == 8
    assert fit_lines("Allow Dr Claire MARTIN to read your DMP?") == [
        "Allow Dr Claire", "MARTIN to read", "your DMP?"]


def test_fit_lines_folds_accents_to_ascii() -> None:
    assert fit_lines("Autoriser le Dr Hélène Lefèvre à lire le DMP ?") == [
        "Autoriser le Dr", "Helene Lefevre a", "lire le DMP ?"]
    assert fit_lines("cœur \u2013 «désactivé»\u2026") == ['coeur -', '"desactive"...']


def test_fit_lines_marks_what_it_cut() -> None:
    lines = fit_lines(" ".join(["mot"] * 60))
    assert len(lines) == DISPLAY_LINES and lines[-1].endswith("...")
    assert len(lines[-1]) <= DISPLAY_COLUMNS


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() == 0


def test_protocol_doc_is_generated_from_the_method_table() -> None:
    from bifente.edged.api import docs

    assert docs.TARGET.read_text() == docs.render(), "run: python -m bifente.edged.api.docs"


def test_example_config_is_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "edged.example.toml"
    assert load_config(example) == Config()


def test_limits_table_is_checked(tmp_path) -> None:
    from bifente.edged.config import ConfigError, load_config

    path = tmp_path / "edged.toml"
    path.write_text('[limits."Practice server"]\nrate_burst = 400\nmax_connections = 64\n')
    assert load_config(path).limits == {"Practice server": {"rate_burst": 400,
                                                            "max_connections": 64}}
    path.write_text('[limits."X"]\nrate_burst = -1\n')
    with pytest.raises(ConfigError, match="positive"):
        load_config(path)
