"""An HTTPS server for the browser tests: the clinic page and the compiled SDK, for any host name.

The same server answers as https://clinic.test:PORT and https://evil.test:PORT (Chromium maps
both names to 127.0.0.1), so the two origins differ by host name only. Its certificate is
made here; Chromium accepts exactly its key (--ignore-certificate-errors-spki-list).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import mimetypes
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["PageServer"]


class PageServer:
    """Serves `/` from the page folder and `/dist/...` from sdk/js/dist, over HTTPS."""

    def __init__(self, page_dir: Path, dist_dir: Path, workdir: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clinic.test")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName("clinic.test"), x509.DNSName("evil.test")]), critical=False)
                .sign(key, hashes.SHA256()))
        cert_path, key_path = workdir / "pages.crt", workdir / "pages.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        self.spki_sha256 = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        roots = {"": page_dir.resolve(), "dist": dist_dir.resolve()}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/") or "index.html"
                top, _, rest = path.partition("/")
                root, relative = (roots["dist"], rest) if top == "dist" else (roots[""], path)
                target = (root / relative).resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    self.send_error(404)
                    return
                body = target.read_bytes()
                kind = "text/javascript" if target.suffix == ".js" else \
                    mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
