"""A token server for Docker's bearer auth (distribution's "token" auth, the protocol of Docker Hub
and every registry behind an identity service), small enough to read: the registry sends a client
without a token here, the client asks with its credentials for a scope, and gets a JWT signed with
a key that the registry trusts (the certificate in its rootcertbundle).

- ``make_signing_key(dir)``: an EC P-256 key and a self-signed certificate for it, made for the
  run (cryptography);
- ``serve_tokens(ns, workdir, port, key, users)``: this file run as a script inside a network
  namespace, listening on 127.0.0.1:`port` until the block ends; every request it answers is a
  line of JSON in ``token_log(workdir, port)``;
- ``sign(key, **claims)``: a token as the server signs it (tests forge others with another key).

Rules, as Docker Hub's: a request with wrong credentials is refused (401); one without credentials
gets a token with no access (the registry then answers 401, "insufficient scope"); a user gets
the actions asked for on any repository (pull, push).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ISSUER = "sdctr-test-issuer"
SERVICE = "sdctr-test-registry"


@dataclasses.dataclass(frozen=True)
class SigningKey:
    key: Path  # PEM, PKCS#8
    cert: Path  # PEM, self-signed: the registry's rootcertbundle


def make_signing_key(where: Path, name: str = "token") -> SigningKey:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sdctr test {name} signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(private, hashes.SHA256()))
    key_file, cert_file = where / f"{name}.key", where / f"{name}.crt"
    key_file.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return SigningKey(key_file, cert_file)


def sign(key: SigningKey, subject: str, access: list[dict[str, Any]], lifetime: int = 300) -> str:
    """A token for `subject` with `access`; the certificate travels in the header (x5c), as the
    registry's verification wants it (chained to its rootcertbundle)."""
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(key.cert.read_bytes())
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "iat": now, "nbf": now - 10,
              "exp": now + lifetime, "jti": uuid.uuid4().hex, "access": access}
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return jwt.encode(claims, key.key.read_text(), algorithm="ES256", headers={"x5c": [x5c]})


def token_log(workdir: Path, port: int) -> Path:
    return workdir / f"tokens-{port}.jsonl"


def requests_seen(workdir: Path, port: int) -> list[dict[str, Any]]:
    """What the token server answered, in order: {"user", "scope", "service", "status"}."""
    path = token_log(workdir, port)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@contextlib.contextmanager
def serve_tokens(enter: tuple[str, ...], workdir: Path, port: int, key: SigningKey,
                 users: Mapping[str, str]) -> Iterator[str]:
    """This module as a server in the namespace that `enter` enters; yields the realm URL."""
    config = workdir / f"tokens-{port}.json"
    config.write_text(json.dumps({"port": port, "key": str(key.key), "cert": str(key.cert),
                                  "users": dict(users), "log": str(token_log(workdir, port))}))
    out = workdir / f"tokens-{port}.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen([*enter, sys.executable, __file__, str(config)], stdin=subprocess.DEVNULL,
                                stdout=f, stderr=subprocess.STDOUT,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    try:
        deadline = time.monotonic() + 20
        while b"listening" not in out.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the token server did not start: {out.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/token"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _serve(config: dict[str, Any]) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    key = SigningKey(Path(config["key"]), Path(config["cert"]))
    users: dict[str, str] = config["users"]
    log = Path(config["log"])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            user, status = None, 200
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                user = name
                if users.get(name) != password:
                    status = 401
            if url.path != "/token":
                status = 404
            scopes = query.get("scope", [])
            with open(log, "a") as f:
                f.write(json.dumps({"user": user, "scope": " ".join(scopes), "status": status,
                                    "service": query.get("service", [""])[0]}) + "\n")
            if status != 200:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            access = []
            for scope in scopes:  # repository:NAME:ACTIONS, as the registry's challenge names it
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                if user is not None and kind == "repository":
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
            token = sign(key, user or "", access)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", config["port"]), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _serve(json.loads(Path(sys.argv[1]).read_text()))
