"""The registry verbs beyond pull, against real registries (Debian's docker-registry in a network
namespace of our own, see helpers/registries.py): login/logout and the credentials pulls then use,
search over /v2/_catalog, mirrors from sdctr.yaml (first, and fallen back from), insecure
registries over plain HTTP, and the pull's in-place progress on a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO
from helpers.cli import sdctr_argv
from helpers.layout import Variant, busybox_layer, small_layer
from helpers.registries import (
    AUTHED,
    HOST_NAME,
    MIRROR,
    MIRROR_PORT,
    PASSWORD,
    PLAIN,
    PLAIN_PORT,
    USER,
    Registries,
    registries_with_layout,
)

from sdctr.image import store as images
from sdctr.paths import Paths

pytestmark = pytest.mark.host

HOST_ARCH = images.host_architecture()
CMD = ("/bin/sh", "-c", "echo hello")


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    work = tmp_path_factory.mktemp("registry-extras")
    with registries_with_layout(work) as (r, layout):
        layout.add("origin", [Variant(HOST_ARCH, ("FROM=origin",), CMD, (small_layer("from", b"origin\n"),))])
        layout.add("mirror", [Variant(HOST_ARCH, ("FROM=mirror",), CMD, (small_layer("from", b"mirror\n"),))])
        layout.add("busybox", [Variant(HOST_ARCH, (), ("sh",), (busybox_layer(work),))])
        r.push(layout.root, "origin", f"{PLAIN}/team/app:1")  # the same name, other content
        r.push(layout.root, "mirror", f"{MIRROR}/team/app:1")
        r.push(layout.root, "origin", f"{PLAIN}/team/only-origin:1")
        r.push(layout.root, "mirror", f"{MIRROR}/library/busybox:1")  # docker.io's, via the mirror only
        r.push(layout.root, "busybox", f"{PLAIN}/tools/busybox:1")
        for name in ("team/app", "team/tool", "other/thing"):
            r.push(layout.root, "origin", f"{AUTHED}/{name}:1", creds=f"{USER}:{PASSWORD}")
        yield r


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _env_of(tmp_path: Path, config: str | None = None) -> dict[str, str]:
    """An auth file and (when given) a sdctr.yaml of the test's own."""
    env = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    if config is not None:
        (tmp_path / "sdctr.yaml").write_text(config)
        env["SDCTR_CONFIG"] = str(tmp_path / "sdctr.yaml")
    return env


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def _fails(r: subprocess.CompletedProcess[str], *words: str) -> str:
    assert r.returncode == 125, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.stderr.startswith("sdctr: error: ") and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    return r.stderr


def _env_value(root: Path, ref: str) -> tuple[str, ...]:
    return images.resolve(Paths.from_root(str(root)), ref).config.env


# --- login / logout -----------------------------------------------------------------------------------

def test_login_pull_logout_round_trip(reg: Registries, root: Path, tmp_path: Path) -> None:
    env = _env_of(tmp_path)
    auth_file = tmp_path / "auth.json"
    other = {"auth": "b3RoZXI6cHc="}
    auth_file.write_text(json.dumps({"auths": {"quay.io": other}, "credHelpers": {"x.io": "pass"}}))

    _fails(reg.sdctr(root, "pull", f"{AUTHED}/team/app:1", env=env), "needs credentials", "sdctr login")

    out = _ok(reg.sdctr(root, "login", "-u", USER, "--password-stdin", AUTHED, env=env,
                        input=PASSWORD + "\n"))
    assert out == "Login Succeeded\n"
    assert auth_file.stat().st_mode & 0o777 == 0o600
    doc = json.loads(auth_file.read_text())
    assert doc["auths"]["quay.io"] == other and doc["credHelpers"] == {"x.io": "pass"}  # kept
    assert set(doc["auths"]) == {"quay.io", AUTHED}
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

    _ok(reg.sdctr(root, "pull", f"{AUTHED}/team/app:1", env=env))  # with the stored credentials
    assert _env_value(root, f"{AUTHED}/team/app:1") == ("FROM=origin",)

    assert _ok(reg.sdctr(root, "logout", AUTHED, env=env)) == f"Removed login credentials for {AUTHED}\n"
    assert json.loads(auth_file.read_text())["auths"] == {"quay.io": other}
    _fails(reg.sdctr(root, "pull", f"{AUTHED}/team/tool:1", env=env), "needs credentials")
    _fails(reg.sdctr(root, "logout", AUTHED, env=env), f"not logged in to {AUTHED}")


def test_login_with_a_wrong_password_changes_nothing(reg: Registries, root: Path, tmp_path: Path) -> None:
    env = _env_of(tmp_path)
    auth_file = tmp_path / "auth.json"
    _ok(reg.sdctr(root, "login", "-u", USER, "--password-stdin", AUTHED, env=env, input=PASSWORD))
    before = auth_file.read_bytes()
    r = reg.sdctr(root, "login", "-u", USER, "--password-stdin", AUTHED, env=env, input="wrong\n")
    assert _fails(r).splitlines()[0] == (f"sdctr: error: login to {AUTHED} failed: the registry refused "
                                         "the username or password")
    assert r.stdout == ""
    assert auth_file.read_bytes() == before


def test_login_to_an_open_registry(reg: Registries, root: Path, tmp_path: Path) -> None:
    """As docker: a registry that asks for nothing accepts any login; the credentials are stored."""
    env = _env_of(tmp_path)
    assert _ok(reg.sdctr(root, "login", "-u", "me", "-p", "pw", f"http://{PLAIN}/", env=env)) == \
        "Login Succeeded\n"
    assert PLAIN in json.loads((tmp_path / "auth.json").read_text())["auths"]


def test_login_without_a_terminal_asks_for_flags(reg: Registries, root: Path, tmp_path: Path) -> None:
    _fails(reg.sdctr(root, "login", AUTHED, env=_env_of(tmp_path), input=""), "--username")
    assert not (tmp_path / "auth.json").exists()


def test_login_prompts_on_a_terminal(reg: Registries, root: Path, tmp_path: Path) -> None:
    """Username by input(), password by getpass (not echoed), on a real pseudo-terminal."""
    r = _on_pty(reg, root, ["login", AUTHED], _env_of(tmp_path),
                answers={b"Username for": USER, b"Password:": PASSWORD})
    assert r["status"] == 0, r
    assert b"Login Succeeded" in r["output"]
    assert PASSWORD.encode() not in r["output"]
    assert AUTHED in json.loads((tmp_path / "auth.json").read_text())["auths"]


# --- search -------------------------------------------------------------------------------------------

def test_search_a_registry_catalog(reg: Registries, root: Path, tmp_path: Path) -> None:
    env = _env_of(tmp_path)
    lines = _ok(reg.sdctr(root, "search", f"{PLAIN}/TEAM", env=env)).splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    assert [x.strip() for x in lines[1:]] == [f"{PLAIN}/team/app", f"{PLAIN}/team/only-origin"]

    out = _ok(reg.sdctr(root, "search", "--limit", "1", "--format", "json", f"{PLAIN}/team", env=env))
    assert [json.loads(x) for x in out.splitlines()] == [
        {"Name": f"{PLAIN}/team/app", "Description": "", "StarCount": None, "IsOfficial": None}]


def test_search_a_registry_that_wants_credentials(reg: Registries, root: Path, tmp_path: Path) -> None:
    env = _env_of(tmp_path)
    _fails(reg.sdctr(root, "search", f"{AUTHED}/team", env=env), "needs credentials", "sdctr login")
    _ok(reg.sdctr(root, "login", "-u", USER, "--password-stdin", AUTHED, env=env, input=PASSWORD))
    names = _ok(reg.sdctr(root, "search", f"{AUTHED}/team", env=env)).split()[4:]
    assert names == [f"{AUTHED}/team/app", f"{AUTHED}/team/tool"]


def test_catalog_follows_the_pages(reg: Registries, root: Path) -> None:
    code = ("import json, sys\nfrom sdctr import config\nfrom sdctr.image import registry\n"
            "from sdctr.paths import Paths\n"
            f"print(json.dumps(list(registry.catalog(Paths.from_root(sys.argv[1]), {AUTHED!r}, "
            "config.Registries(), page=1))))")
    auth = root.parent / "auth.json"
    auth.write_text(json.dumps({"auths": {AUTHED: {"username": USER, "password": PASSWORD}}}))
    out = reg.exec([sys.executable, "-c", code, str(root)], env=reg.env({"REGISTRY_AUTH_FILE": str(auth)}))
    assert json.loads(out.stdout) == ["other/thing", "team/app", "team/tool"]


# --- mirrors and insecure registries --------------------------------------------------------------------

def test_a_mirror_is_tried_first(reg: Registries, root: Path, tmp_path: Path) -> None:
    """Both have team/app:1 with other content: the image must be the mirror's."""
    env = _env_of(tmp_path, f"registries:\n  mirrors:\n    {PLAIN}: ['http://{MIRROR}']\n")
    origin_before = reg.requests_by_sdctr(PLAIN_PORT)
    _ok(reg.sdctr(root, "pull", f"{PLAIN}/team/app:1", env=env))
    assert _env_value(root, f"{PLAIN}/team/app:1") == ("FROM=mirror",)
    assert "GET /v2/team/app/manifests/1 200" in reg.requests_by_sdctr(MIRROR_PORT)
    assert reg.requests_by_sdctr(PLAIN_PORT) == origin_before  # the registry itself was not asked


def test_a_mirror_for_docker_hub(reg: Registries, root: Path, tmp_path: Path) -> None:
    """`busybox` is docker.io/library/busybox: only the mirror has it (the namespace has no way out)."""
    env = _env_of(tmp_path, f"registries:\n  mirrors:\n    docker.io:\n      - http://{MIRROR}\n")
    out = _ok(reg.sdctr(root, "pull", "busybox:1", env=env))
    assert out.splitlines()[0] == "1: Pulling from library/busybox"
    assert out.splitlines()[-1] == "Status: Downloaded newer image for busybox:1"
    assert _env_value(root, "busybox:1") == ("FROM=mirror",)


@pytest.mark.parametrize("mirror", [f"http://127.0.0.1:{MIRROR_PORT + 10}", f"http://{MIRROR}"],
                         ids=["mirror-down", "mirror-lacks-the-image"])
def test_fallback_to_the_registry(reg: Registries, root: Path, tmp_path: Path, mirror: str) -> None:
    env = _env_of(tmp_path, f"registries:\n  mirrors:\n    {PLAIN}: ['{mirror}']\n")
    out = _ok(reg.sdctr(root, "pull", f"{PLAIN}/team/only-origin:1", env=env))
    assert out.splitlines()[-1] == f"Status: Downloaded newer image for {PLAIN}/team/only-origin:1"
    assert _env_value(root, f"{PLAIN}/team/only-origin:1") == ("FROM=origin",)
    if mirror.endswith(MIRROR):  # asked first, said no
        assert "GET /v2/team/only-origin/manifests/1 404" in reg.requests_by_sdctr(MIRROR_PORT)


def test_insecure_registry_by_name(reg: Registries, root: Path, tmp_path: Path) -> None:
    """registry.test is not loopback by name, so sdctr speaks TLS to it unless sdctr.yaml says not."""
    ref = f"{HOST_NAME}:{PLAIN_PORT}/team/app:1"
    _fails(reg.sdctr(root, "pull", ref, env=_env_of(tmp_path)), f"cannot reach registry {HOST_NAME}")
    env = _env_of(tmp_path, f"registries:\n  insecure: ['{HOST_NAME}:{PLAIN_PORT}']\n")
    _ok(reg.sdctr(root, "pull", ref, env=env))
    assert _env_value(root, ref) == ("FROM=origin",)
    names = _ok(reg.sdctr(root, "search", f"{HOST_NAME}:{PLAIN_PORT}/only", env=env)).split()[4:]
    assert names == [f"{HOST_NAME}:{PLAIN_PORT}/team/only-origin"]


def test_a_bad_configuration_is_one_clear_line(reg: Registries, root: Path, tmp_path: Path) -> None:
    env = _env_of(tmp_path, "registries:\n  mirrors:\n    docker.io: ['ftp://x/y']\n")
    _fails(reg.sdctr(root, "pull", "busybox", env=env), "sdctr.yaml", "registries.mirrors.docker.io",
           "ftp://x/y")


# --- progress on a terminal ---------------------------------------------------------------------------

def test_pull_progress_on_a_terminal(reg: Registries, root: Path, tmp_path: Path) -> None:
    r = _on_pty(reg, root, ["pull", f"{PLAIN}/tools/busybox:1"], _env_of(tmp_path))
    assert r["status"] == 0, r
    screen = r["output"].decode()
    assert "\x1b[" in screen  # lines rewritten in place
    image = images.resolve(Paths.from_root(str(root)), f"{PLAIN}/tools/busybox:1")
    short = image.layer_blobs[0][7:19]
    assert f"{short}: Pull complete" in screen
    last = screen.rstrip().splitlines()[-1]
    assert last.endswith(f"Status: Downloaded newer image for {PLAIN}/tools/busybox:1")


def _on_pty(reg: Registries, root: Path, args: list[str], env: dict[str, str],
            answers: dict[bytes, str] | None = None) -> dict[str, object]:
    """The CLI with a pseudo-terminal for stdin and stdout; ``answers``: prompt -> what to type."""
    main, tty = pty.openpty()
    cmd = sdctr_argv(*args, root=root, prefix=reg.ns.enter)
    proc = subprocess.Popen(cmd, stdin=tty, stdout=tty, stderr=tty, env=reg.env(env), cwd=REPO,
                            start_new_session=True)
    os.close(tty)
    output, pending = b"", dict(answers or {})
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            assert ready, f"no output for 60 s: {output!r}"
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            for prompt in [p for p in pending if p in output]:
                os.write(main, pending.pop(prompt).encode() + b"\n")
    finally:
        os.close(main)
        status = proc.wait(timeout=60)
    return {"status": status, "output": output}
