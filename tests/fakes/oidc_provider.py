"""A local OpenID Connect provider for tests: the district's identity provider as the services see it.

The server is a real HTTP server in a process of its own
(``python -m tests.fakes.oidc_provider --port P --dir DIR``) serving the discovery document
(``/.well-known/openid-configuration``), the key set (``/jwks``, read from ``DIR/jwks.json`` at
every request, so that a key rotated by the test is served at once) and a token endpoint for the
password grant (``/token``: the users of ``DIR/users.json``, what ``motcua token`` asks). Every
request is appended to ``DIR/requests.log`` (how a test counts the services' fetches).

The keys are made by the test (:class:`OidcProvider`), which keeps the private keys and mints the
tokens with ``mint(...)``: the process only publishes the public halves, as a real provider does.
``provider()`` is the one provider of a test session, started on first use, stopped at exit; the
services under test point ``OIDC_ISSUER`` at it (tests/conftest.py, tests/e2e/conftest.py).
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.fakes.serving import serve_until_stopped

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "motcua"


# --- the server process ----------------------------------------------------------------------------

def make_handler(directory: Path, issuer: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            with (directory / "requests.log").open("a") as out:
                out.write(self.path + "\n")
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": issuer, "jwks_uri": f"{issuer}/jwks", "token_endpoint": f"{issuer}/token",
                        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"]}
            elif self.path == "/jwks":
                body = json.loads((directory / "jwks.json").read_text())
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            """The token endpoint, password grant only: a user of ``DIR/users.json`` gets a token
            signed with the provider's current key (``DIR/signing.json``)."""
            with (directory / "requests.log").open("a") as out:
                out.write(self.path + "\n")
            form = dict(parse_qsl(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()))
            users_file = directory / "users.json"
            users = json.loads(users_file.read_text()) if users_file.exists() else {}
            user = users.get(form.get("username", ""))
            if self.path != "/token" or form.get("grant_type") != "password":
                status, body = 400, {"error": "unsupported_grant_type"}
            elif user is None or user["password"] != form.get("password"):
                status, body = 401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
            else:
                signing = json.loads((directory / "signing.json").read_text())
                now = int(time.time())
                claims = {"iss": issuer, "aud": AUDIENCE, "azp": form.get("client_id"), "iat": now,
                          "exp": now + 300, "sub": form["username"], **user["claims"]}
                token = jwt.encode(claims, signing["pem"], algorithm=signing["alg"], headers={"kid": signing["kid"]})
                status, body = 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    return serve_until_stopped(args.port, make_handler(Path(args.dir), f"http://127.0.0.1:{args.port}"))


# --- the test's side: keys, tokens, the process -----------------------------------------------------

def _new_key(alg: str):
    if alg.startswith("RS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return private, RSAAlgorithm.to_jwk(private.public_key())
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        return private, ECAlgorithm.to_jwk(private.public_key())
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        return private, OKPAlgorithm.to_jwk(private.public_key())
    raise ValueError(f"no key for {alg}")


def _free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OidcProvider:
    """Keys of the test's own, published by the server process; ``mint`` issues tokens."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory or tempfile.mkdtemp(prefix="motcua-oidc-"))
        self.port = _free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys: dict[str, tuple[str, object]] = {}     # kid -> (alg, private key), the newest last
        self.withdrawn: dict[str, tuple[str, object]] = {}    # keys no longer published
        self.published: list[dict] = []
        self._lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.rotate("RS256", keep_old=False)

    # keys
    def rotate(self, alg: str = "RS256", *, keep_old: bool = False) -> str:
        """A new signing key (its ``kid`` returned), published at once; the old ones are withdrawn
        unless ``keep_old``. Tokens minted from now on are signed with it."""
        private, public_jwk = _new_key(alg)
        kid = uuid.uuid4().hex[:12]
        public = {**json.loads(public_jwk), "kid": kid, "use": "sig", "alg": alg}
        with self._lock:
            if not keep_old:
                self.withdrawn.update(self.keys)
            self.keys = {**(self.keys if keep_old else {}), kid: (alg, private)}
            self.published = [*(self.published if keep_old else []), public]
            path = self.directory / "jwks.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"keys": self.published}))
            os.replace(temporary, path)     # the server never reads half a file
            # what the token endpoint signs with (a provider holds its own private keys)
            pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
            signing = self.directory / "signing.tmp"
            signing.write_text(json.dumps({"kid": kid, "alg": alg, "pem": pem}))
            os.replace(signing, self.directory / "signing.json")
        self.kid = kid
        return kid

    def add_user(self, username: str, password: str, **claims) -> None:
        """A user the token endpoint knows (``motcua token``), with the claims of their tokens."""
        path = self.directory / "users.json"
        users = json.loads(path.read_text()) if path.exists() else {}
        users[username] = {"password": password, "claims": claims}
        path.write_text(json.dumps(users, ensure_ascii=False))

    def fetches(self, path: str = "/jwks") -> int:
        log = self.directory / "requests.log"
        return log.read_text().splitlines().count(path) if log.exists() else 0

    # tokens
    def claims(self, name: str, unit: str, roles, *, expires_in: float = 3600, **extra) -> dict:
        now = int(time.time())
        return {"iss": self.issuer, "aud": AUDIENCE, "sub": uuid.uuid5(uuid.NAMESPACE_URL, name).hex,
                "iat": now, "exp": now + int(expires_in), "name": name, "unit": unit,
                "roles": [roles] if isinstance(roles, str) else list(roles), **extra}

    def mint(self, name: str, unit: str, roles=("desk_officer",), *, expires_in: float = 3600,
             kid: str | None = None, headers: dict | None = None, **claims) -> str:
        """A token of ``name`` (any Unicode) of ``unit`` with ``roles``, signed with the newest key
        (or ``kid``); ``claims`` override or add claims (``aud=...``, ``iss=...``)."""
        kid = kid or self.kid
        alg, private = self.keys.get(kid) or self.withdrawn[kid]
        return jwt.encode(self.claims(name, unit, roles, expires_in=expires_in, **claims), private,
                          algorithm=alg, headers={"kid": kid, **(headers or {})})

    # the process
    def start(self) -> "OidcProvider":
        err = (self.directory / "server.stderr").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.oidc_provider", "--port", str(self.port), "--dir", str(self.directory)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        watchdog = threading.Timer(15, self.process.kill)    # never wait for ever
        watchdog.start()
        try:
            line = self.process.stdout.readline()
        finally:
            watchdog.cancel()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the OIDC provider did not start: {line!r} "
                               f"{(self.directory / 'server.stderr').read_text()}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()

    def settings(self) -> dict:
        """What a service under test is configured with to trust this provider."""
        return {"AUTH_MODE": "oidc", "OIDC_ISSUER": self.issuer, "OIDC_AUDIENCE": AUDIENCE}


_SESSION: OidcProvider | None = None
_SESSION_LOCK = threading.Lock()


def provider() -> OidcProvider:
    """The test session's provider, started on first use and stopped when the session ends."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = OidcProvider().start()
            atexit.register(_SESSION.stop)
        return _SESSION


if __name__ == "__main__":
    sys.exit(main())
