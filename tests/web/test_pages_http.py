"""The patient pages' security at the HTTP level (no browser needed): cookies, CSRF, headers."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from bifente.simulators.dmp.testing import DmpClient, DmpWorld


def _cookie(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


def _csrf(html: bytes) -> str:
    m = re.search(rb'name="csrf" value="([^"]+)"', html)
    assert m
    return m.group(1).decode()


def _form(client: DmpClient, path: str, cookie: str, fields: dict[str, str], **headers: str):
    return client.request("POST", path, body=urlencode(fields).encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, **headers})


def test_cookie_flags_headers_and_csrf(web_world: DmpWorld) -> None:
    world = web_world
    ins, password = world.create()
    client = DmpClient(world.host.url, world.host.cafile)
    try:
        r = client.get("/patient/login")
        assert r.status == 200
        set_cookie = r.headers["set-cookie"]
        assert set_cookie.startswith("__Host-dmp_patient=")
        for flag in ("Path=/", "Secure", "HttpOnly", "SameSite=Strict"):
            assert flag in set_cookie
        assert "script-src" not in r.headers["content-security-policy"]
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        cookie, csrf = _cookie(set_cookie), _csrf(r.body)

        # no token, a wrong token, a cross-site request: refused, no code sent
        for fields, extra in (({}, {}), ({"csrf": "x" * 43}, {}),
                              ({"csrf": csrf}, {"Sec-Fetch-Site": "cross-site"})):
            r = _form(client, "/patient/login", cookie, {"ins": ins, "password": password,
                                                         **fields}, **extra)
            assert r.status == 403, r.body
        assert client.get(f"/api/test/last-code?ins={ins}").status == 404

        # without a session cookie, a POST gets the login page again
        r = _form(client, "/patient/login", "", {"ins": ins, "password": password,
                                                 "csrf": csrf})
        assert r.status == 303 and r.headers["location"] == "/patient/login"

        r = _form(client, "/patient/login", cookie, {"ins": ins, "password": password,
                                                     "csrf": csrf})
        assert r.status == 303 and r.headers["location"] == "/patient/code"
        code = client.get(f"/api/test/last-code?ins={ins}").json()["code"]
        r = _form(client, "/patient/code", cookie, {"code": code, "csrf": csrf})
        assert r.status == 303 and r.headers["location"] == "/patient/documents"
        new_cookie = _cookie(r.headers["set-cookie"])
        assert new_cookie != cookie  # renewed at login: no session fixation
        assert client.get("/patient/documents", headers={"Cookie": cookie}).status == 303
        r = client.get("/patient/documents", headers={"Cookie": new_cookie})
        assert r.status == 200 and b"Mes documents" in r.body
        assert _csrf(r.body) != csrf  # a new token with the new session

        # escaping: a title with markup is shown as text
        world.feed(ins, data=world.cda(ins, "11502-2", title="<script>alert(1)</script>",
                                       text="x", media_type="text/plain"))
        r = client.get("/patient/documents", headers={"Cookie": new_cookie})
        assert b"<script>" not in r.body and b"&lt;script&gt;alert(1)&lt;/script&gt;" in r.body
    finally:
        client.close()


def test_pages_need_a_session(web_world: DmpWorld) -> None:
    client = DmpClient(web_world.host.url, web_world.host.cafile)
    try:
        for path in ("/patient/", "/patient/documents", "/patient/traces", "/patient/settings",
                     "/patient/code"):
            r = client.get(path)
            assert r.status == 303 and r.headers["location"] == "/patient/login", path
        assert client.get("/static/patient.css").status == 200
        assert client.get("/static/../host.py").status == 404  # a file beside static/
    finally:
        client.close()


def test_login_with_the_code_shown_on_the_terminal(web_world: DmpWorld) -> None:
    world = web_world
    ins, password = world.create()
    r = world.call("POST", f"/api/dmp/{ins}/patient-code", "gp", consent="read", ins=ins)
    assert r.status == 200, r.body
    code = r.json()["code"]
    client = DmpClient(world.host.url, world.host.cafile)
    try:
        r = client.get("/patient/login")
        cookie, csrf = _cookie(r.headers["set-cookie"]), _csrf(r.body)
        r = _form(client, "/patient/login", cookie, {"ins": ins, "password": password,
                                                     "csrf": csrf})
        assert r.status == 303 and r.headers["location"] == "/patient/code"
        r = client.get("/patient/code", headers={"Cookie": cookie})
        assert "affiché sur le terminal".encode() in r.body
        r = _form(client, "/patient/code", cookie, {"code": code, "csrf": csrf})
        assert r.status == 303 and r.headers["location"] == "/patient/documents"
    finally:
        client.close()
