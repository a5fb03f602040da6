"""Registry credentials in Docker's / containers' ``auth.json`` format:

    {"auths": {"https://index.docker.io/v1/": {"auth": "<base64 user:password>"},
               "registry.example.com:5000": {"auth": "..."}}}

The file is ``REGISTRY_AUTH_FILE`` when set (as podman and skopeo read it), else ``<root>/auth.json``.
It holds passwords, so it is written mode 0600 and atomically; entries and keys that sdctr does not
know (``credHelpers``, other registries) are kept as they are.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from sdctr.image.store import DEFAULT_DOMAIN
from sdctr.log import SdctrError
from sdctr.paths import Paths

DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # the key Docker itself writes for Docker Hub
DOCKER_HUB_ALIASES = ("index.docker.io", "docker.io", "registry-1.docker.io", "registry.hub.docker.com")


def auth_file(paths: Paths) -> Path:
    return Path(os.environ.get("REGISTRY_AUTH_FILE") or paths.root / "auth.json")


def registry_domain(text: str) -> str:
    """What the user typed for a registry (``docker.io``, ``https://index.docker.io/v1/``,
    ``http://host:5000/``) as the domain of an image reference."""
    host = re.sub(r"^[a-z]+://", "", text.strip()).split("/")[0]
    if not host:
        raise SdctrError(f"{text!r} names no registry", hint="e.g. registry.example.com:5000")
    return DEFAULT_DOMAIN if host in DOCKER_HUB_ALIASES else host


def storage_key(domain: str) -> str:
    return DOCKER_HUB_KEY if domain == DEFAULT_DOMAIN else domain


def _key_domain(key: str) -> str:
    return registry_domain(key) if key else ""


def credentials(path: Path, domain: str) -> tuple[str, str] | None:
    """(user, password) stored for ``domain``, or None."""
    for key, entry in _auths(_read(path)).items():
        if _key_domain(key) == domain and isinstance(entry, dict):
            found = _decode(path, key, entry)
            if found:
                return found
    return None


def store(path: Path, domain: str, user: str, password: str) -> None:
    doc = _read(path)
    auths = _auths(doc)
    for key in [k for k in auths if _key_domain(k) == domain]:
        del auths[key]  # one entry per registry, however it was spelled before
    auths[storage_key(domain)] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    doc["auths"] = auths
    _write(path, doc)


def remove(path: Path, domain: str) -> bool:
    """Forgets the credentials for ``domain``: False if there were none."""
    doc = _read(path)
    auths = _auths(doc)
    keys = [k for k in auths if _key_domain(k) == domain]
    for key in keys:
        del auths[key]
    if keys:
        _write(path, doc)
    return bool(keys)


def ask(domain: str, user: str | None, password: str | None, password_stdin: bool) -> tuple[str, str]:
    """The username and password from the flags, stdin or, on a terminal, a prompt."""
    if password is not None and password_stdin:
        raise SdctrError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not user:
            raise SdctrError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    if not user:
        user = _prompt(lambda: input(f"Username for {domain}: "), "--username")
    if password is None:
        password = _prompt(lambda: getpass.getpass("Password: "), "--password-stdin")
    if not user or not password:
        raise SdctrError("the username and the password must not be empty")
    return user, password


def _prompt(read: Any, flag: str) -> str:
    if not sys.stdin.isatty():
        raise SdctrError("cannot ask for credentials: stdin is not a terminal", hint=f"give {flag}")
    try:
        return str(read()).strip()
    except EOFError:
        raise SdctrError("no credentials given") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SdctrError(f"cannot read the auth file {path}: {e}") from None
    if not isinstance(doc, dict):
        raise SdctrError(f"the auth file {path} is not a JSON object")
    return doc


def _auths(doc: dict[str, Any]) -> dict[str, Any]:
    auths = doc.get("auths") or {}
    return auths if isinstance(auths, dict) else {}


def _decode(path: Path, key: str, entry: dict[str, Any]) -> tuple[str, str] | None:
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError:
            raise SdctrError(f"{path}: the auth entry for {key} is not base64(user:password)") from None
        if sep:
            return user, password
    if entry.get("username") and entry.get("password"):
        return str(entry["username"]), str(entry["password"])
    return None


def _write(path: Path, doc: dict[str, Any]) -> None:
    """Temp file made 0600 before a byte is written, fsync, rename: never a half-written or
    world-readable auth file, even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode does not apply to an old temp file
            json.dump(doc, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
