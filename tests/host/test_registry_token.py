"""Bearer-token auth for real: Debian's docker-registry configured for token auth (distribution's
`auth: token`) with an issuer this test runs (helpers/token_server.py: JWTs signed with a key the
test makes), in a network namespace of our own. The registry asks every client for a token; sdctr
must fetch one from the realm it names, with the stored credentials, for `pull` and for `login`."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.layout import Layout, Variant, small_layer
from helpers.registries import (
    PASSWORD,
    USER,
    Registries,
    TokenAuth,
    push,
    require_tools,
    serve_registry,
    throwaway_netns,
)
from helpers.token_server import (
    ISSUER,
    SERVICE,
    SigningKey,
    make_signing_key,
    requests_seen,
    serve_tokens,
    sign,
)

from sdctr.image import store as images
from sdctr.paths import Paths

pytestmark = pytest.mark.host

HOST_ARCH = images.host_architecture()
REGISTRY_PORT, TOKEN_PORT = 5003, 5004
TOKENED = f"127.0.0.1:{REGISTRY_PORT}"
CMD = ("/bin/sh", "-c", "echo hello")


class TokenRegistry(Registries):
    def tokens(self) -> list[dict[str, object]]:
        return requests_seen(self.workdir, TOKEN_PORT)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    require_tools()
    work = tmp_path_factory.mktemp("token-registry")
    key = make_signing_key(work)
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(throwaway_netns("sdctr-tok"))
        realm = stack.enter_context(serve_tokens(ns.enter, work, TOKEN_PORT, key, {USER: PASSWORD}))
        stack.enter_context(serve_registry(ns, work, REGISTRY_PORT,
                                           token=TokenAuth(realm, key.cert, SERVICE, ISSUER)))
        layout = Layout(work / "layout")
        layout.add("app", [Variant(HOST_ARCH, ("FROM=token",), CMD, (small_layer("tok", b"token\n"),))])
        push(ns, layout.root, "app", f"{TOKENED}/team/app:1", creds=f"{USER}:{PASSWORD}")  # skopeo asks too
        yield TokenRegistry(ns, work)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _env_of(tmp_path: Path) -> dict[str, str]:
    return {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}


def _run(r: subprocess.CompletedProcess[str], status: int = 0) -> subprocess.CompletedProcess[str]:
    assert r.returncode == status, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def test_the_registry_checks_the_tokens_signature(reg: TokenRegistry, tmp_path: Path) -> None:
    """The positive control: this registry really asks for tokens and really checks them, so the
    tests below prove sdctr's side of the flow."""
    forger = make_signing_key(tmp_path, "forger")
    access = [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    genuine_key = SigningKey(reg.workdir / "token.key", reg.workdir / "token.crt")  # the fixture's
    probe = ("import sys, urllib.request, urllib.error\n"
             "for token in sys.argv[1:]:\n"
             f"    req = urllib.request.Request('http://{TOKENED}/v2/team/app/manifests/1', headers={{\n"
             "        'Accept': 'application/vnd.oci.image.manifest.v1+json',\n"
             "        **({'Authorization': 'Bearer ' + token} if token else {})})\n"
             "    try:\n"
             "        print(urllib.request.urlopen(req).status)\n"
             "    except urllib.error.HTTPError as e:\n"
             "        print(e.code, e.headers.get('WWW-Authenticate'))\n")
    out = reg.exec([sys.executable, "-c", probe, "", sign(forger, USER, access),
                    sign(genuine_key, USER, access)]).stdout.splitlines()
    assert out[0].startswith("401 Bearer realm=") and f'service="{SERVICE}"' in out[0], out
    assert out[1].startswith("401 "), out  # signed by a key the registry does not trust
    assert out[2] == "200", out


def test_pull_without_credentials_gets_no_access(reg: TokenRegistry, root: Path, tmp_path: Path) -> None:
    before = len(reg.tokens())
    r = _run(reg.sdctr(root, "pull", f"{TOKENED}/team/app:1", env=_env_of(tmp_path)), 125)
    assert "needs credentials" in r.stderr and "sdctr login" in r.stderr, r.stderr
    asked = reg.tokens()[before:]
    assert asked and asked[0] == {"user": None, "scope": "repository:team/app:pull", "status": 200,
                                  "service": SERVICE}, asked


def test_login_then_pull_through_the_token_server(reg: TokenRegistry, root: Path, tmp_path: Path) -> None:
    env = _env_of(tmp_path)
    before = len(reg.tokens())
    r = _run(reg.sdctr(root, "login", "-u", USER, "--password-stdin", TOKENED, env=env, input="wrong\n"), 125)
    assert "refused the username or password" in r.stderr, r.stderr
    assert not (tmp_path / "auth.json").exists()
    assert [t["status"] for t in reg.tokens()[before:]] == [401]  # the token server said no, not the registry

    before = len(reg.tokens())
    assert _run(reg.sdctr(root, "login", "-u", USER, "--password-stdin", TOKENED, env=env,
                          input=PASSWORD + "\n")).stdout == "Login Succeeded\n"
    assert TOKENED in json.loads((tmp_path / "auth.json").read_text())["auths"]
    assert [(t["user"], t["status"]) for t in reg.tokens()[before:]] == [(USER, 200)]

    before = len(reg.tokens())
    pulled = _run(reg.sdctr(root, "pull", f"{TOKENED}/team/app:1", env=env))
    assert pulled.stdout.splitlines()[-1] == f"Status: Downloaded newer image for {TOKENED}/team/app:1"
    assert images.resolve(Paths.from_root(str(root)), f"{TOKENED}/team/app:1").config.env == ("FROM=token",)
    # one token for the whole pull (manifest, config and layer), asked for the repository's pull scope
    assert reg.tokens()[before:] == [{"user": USER, "scope": "repository:team/app:pull", "status": 200,
                                      "service": SERVICE}]
