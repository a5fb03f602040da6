"""Real registries: Debian's docker-registry (distribution 2.8) inside a network namespace,
listening on loopback only, filled with skopeo from OCI layouts (helpers.layout).

The parts, each written once: a network namespace made for the run (``throwaway_netns``), or
one that exists (a test host's, entered with nsenter: ``InNetns``); a registry serving in it
until the block ends (``serve_registry``); a push into it (``push``).

For the host tier, ``registries_with_layout``: three registries in a namespace of their own,
plain on 127.0.0.1:5000, htpasswd auth on :5001, and a plain one on :5002 that tests configure
as a mirror. In the namespace, ``registry.test`` names 127.0.0.1 (``ip netns exec`` mounts
/etc/netns/<ns>/hosts over /etc/hosts), so a registry can be reached by a name that is not
loopback by address, as an insecure registry on the network would be; DNS goes to 127.0.0.1 too,
so no lookup leaves the namespace.

Needs (Debian): docker-registry, skopeo, apache2-utils (htpasswd -B), busybox-static.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import REPO, skip_or_fail
from .cli import run_sdctr
from .layout import Layout

PLAIN_PORT = 5000
AUTH_PORT = 5001
MIRROR_PORT = 5002
PLAIN, AUTHED, MIRROR = (f"127.0.0.1:{port}" for port in (PLAIN_PORT, AUTH_PORT, MIRROR_PORT))
HOST_NAME = "registry.test"
USER, PASSWORD = "tester", "s3cret-pw"
TOOLS = ("ip", "docker-registry", "skopeo", "htpasswd")

PULL_SCRIPT = """
import json, sys
from sdctr.image import progress
from sdctr.image import registry
from sdctr.log import SdctrError
from sdctr.paths import Paths
a = json.loads(sys.argv[1])
lines = []
try:
    image = registry.pull(Paths.from_root(a["root"]), a["ref"], platform=a.get("platform"),
                          progress=lambda e: e.status != progress.DOWNLOADING and lines.append(e.line))
    print(json.dumps({"ok": True, "id": image.id, "lines": lines}))
except SdctrError as e:
    print(json.dumps({"ok": False, "error": str(e), "hint": e.hint, "lines": lines}))
"""


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def require_tools() -> None:
    """Skips without the tools; fails under SDCTR_TESTS_STRICT=1 (CI must not go green by skipping)."""
    if missing_tools():
        skip_or_fail(f"needs {', '.join(missing_tools())} "
                     "(apt-get install docker-registry skopeo apache2-utils busybox-static)")


def run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """A command that must succeed; its output captured as text."""
    r = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    return r


# --- network namespaces -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class InNetns:
    """One network namespace, by the command that enters it: `ip netns exec NAME` for a named
    one, `nsenter -t PID -n` for a process's (a test host's)."""

    enter: tuple[str, ...]

    @classmethod
    def named(cls, name: str) -> InNetns:
        return cls(("ip", "netns", "exec", name))

    @classmethod
    def of_process(cls, pid: int) -> InNetns:
        return cls(("nsenter", "-t", str(pid), "-n"))

    def run(self, cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """`cmd` inside; it must succeed."""
        return run([*self.enter, *cmd], **kw)


@contextlib.contextmanager
def throwaway_netns(prefix: str, names: Sequence[str] = ()) -> Iterator[InNetns]:
    """A new network namespace with lo up and nothing else: no route out, and /etc/hosts naming
    127.0.0.1 `localhost` and `names`, DNS to 127.0.0.1 (no lookup leaves it). Removed, with its
    /etc/netns directory, when the block ends."""
    netns = f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 100000}"
    etc = Path("/etc/netns")
    made_etc = not etc.exists()
    run(["ip", "netns", "add", netns])
    try:
        (etc / netns).mkdir(parents=True)
        (etc / netns / "hosts").write_text(" ".join(["127.0.0.1", "localhost", *names]) + "\n")
        (etc / netns / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        ns = InNetns.named(netns)
        ns.run(["ip", "link", "set", "lo", "up"])
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(etc / netns, ignore_errors=True)
        if made_etc:
            with contextlib.suppress(OSError):  # another test's namespace may use it by now
                etc.rmdir()


# --- docker-registry ----------------------------------------------------------------------------------

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{auth}"""


def registry_storage(workdir: Path, port: int) -> Path:
    """Where serve_registry(workdir, port) keeps what was pushed to it."""
    return workdir / f"storage-{port}"


def registry_log(workdir: Path, port: int) -> Path:
    """serve_registry(workdir, port)'s output: its errors and its access log."""
    return workdir / f"registry-{port}.log"


@dataclasses.dataclass(frozen=True)
class TokenAuth:
    """distribution's token auth: clients get a JWT at `realm`, signed with the key whose
    certificate is `cert` (helpers.token_server)."""

    realm: str
    cert: Path
    service: str
    issuer: str


def _auth_config(htpasswd: Path | None, token: TokenAuth | None) -> str:
    if htpasswd:
        return f"auth:\n  htpasswd:\n    realm: sdctr-test\n    path: {htpasswd}\n"
    if token:
        return (f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.service}\n"
                f"    issuer: {token.issuer}\n    rootcertbundle: {token.cert}\n")
    return ""


@contextlib.contextmanager
def serve_registry(ns: InNetns, workdir: Path, port: int, *, htpasswd: Path | None = None,
                   token: TokenAuth | None = None) -> Iterator[None]:
    """docker-registry on 127.0.0.1:`port` in `ns` (with htpasswd or token auth when given), storage
    and log under `workdir`, listening when the block starts, stopped when it ends."""
    storage = registry_storage(workdir, port)
    storage.mkdir(parents=True)
    auth = _auth_config(htpasswd, token)
    config = workdir / f"config-{port}.yml"
    config.write_text(REGISTRY_CONFIG.format(storage=storage, port=port, auth=auth))
    log = registry_log(workdir, port)
    with open(log, "wb") as logf:
        proc = subprocess.Popen([*ns.enter, "docker-registry", "serve", str(config)],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    try:
        _wait_listening(ns, port, log, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(ns: InNetns, port: int, log: Path, proc: subprocess.Popen[bytes]) -> None:
    probe = ("import socket, sys, time\n"
             "for _ in range(200):\n"
             "    try:\n"
             f"        socket.create_connection(('127.0.0.1', {port}), 0.5).close(); sys.exit(0)\n"
             "    except OSError:\n"
             "        time.sleep(0.05)\n"
             "sys.exit(1)\n")
    done = subprocess.run([*ns.enter, sys.executable, "-c", probe])
    if done.returncode != 0 or proc.poll() is not None:
        raise RuntimeError(f"docker-registry on port {port} did not start: {log.read_text()}")


def push(ns: InNetns, layout: Path, tag: str, dest: str, *, fmt: str | None = None, all_: bool = False,
         creds: str | None = None) -> None:
    """skopeo copies the layout's `tag` to docker://`dest` over plain HTTP, from inside `ns`;
    `fmt` (v2s2: Docker schema 2), `all_` (every platform of an index), `creds` (user:password)."""
    cmd = ["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false"]
    cmd += ["--format", fmt] if fmt else []
    cmd += ["--all"] if all_ else []
    cmd += ["--dest-creds", creds] if creds else []
    ns.run([*cmd, f"oci:{layout}:{tag}", f"docker://{dest}"])


# --- the host tier's three registries -----------------------------------------------------------------

@dataclasses.dataclass
class Registries:
    ns: InNetns
    workdir: Path

    def exec(self, cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.ns.run(cmd, **kw)

    def push(self, layout: Path, tag: str, dest: str, **kw: Any) -> None:
        push(self.ns, layout, tag, dest, **kw)

    def blob_file(self, port: int, digest: str) -> Path:
        hexd = digest.split(":")[1]
        blobs = registry_storage(self.workdir, port) / "docker/registry/v2/blobs/sha256"
        return blobs / hexd[:2] / hexd / "data"

    def pull(self, root: Path, ref: str, *, platform: str | None = None,
             env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """sdctr.registry.pull inside the namespace (a child process): {"ok", "id"|"error", "lines"}."""
        args = json.dumps({"root": str(root), "ref": ref, "platform": platform})
        out = self.exec([sys.executable, "-c", PULL_SCRIPT, args], env=self.env(env), cwd=REPO, timeout=120)
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def requests_by_sdctr(self, port: int) -> list[str]:
        """'GET /v2/... STATUS' for each request sdctr made, from the registry's access log."""
        found = []
        for line in registry_log(self.workdir, port).read_text().splitlines():
            if line.endswith('"sdctr"'):  # combined log format: ... "GET /v2/... HTTP/1.1" 200 583 "" "sdctr"
                _, request, rest = line.split('"', 2)
                method, path, _ = request.split()
                found.append(f"{method} {path} {rest.split()[0]}")
        return found

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This checkout's sdctr, no auth file and no configuration unless the test gives them (the
        machine's /etc/sdctr/sdctr.yaml must not steer a test)."""
        inherited = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "SDCTR_CONFIG")}
        return {**inherited, "PYTHONPATH": str(REPO), "SDCTR_CONFIG": str(self.workdir / "no-config.yaml"),
                **(extra or {})}

    def sdctr(self, root: Path, *args: str, env: Mapping[str, str] | None = None,
              input: str | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        """The CLI in the namespace; the caller checks the status."""
        return run_sdctr(*args, root=root, prefix=self.ns.enter, env=self.env(env), input=input, **kw)


@contextlib.contextmanager
def registries(workdir: Path) -> Iterator[Registries]:
    """A namespace of their own with a plain registry on 127.0.0.1:5000, one with htpasswd
    (bcrypt) auth on 127.0.0.1:5001 and a plain one on 127.0.0.1:5002 (the mirror); all torn
    down when the block ends."""
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(throwaway_netns("sdctr-reg", names=[HOST_NAME]))
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(run(["htpasswd", "-Bbn", USER, PASSWORD]).stdout)
        for port in (PLAIN_PORT, AUTH_PORT, MIRROR_PORT):
            stack.enter_context(serve_registry(ns, workdir, port,
                                               htpasswd=htpasswd if port == AUTH_PORT else None))
        yield Registries(ns, workdir)


@contextlib.contextmanager
def registries_with_layout(workdir: Path) -> Iterator[tuple[Registries, Layout]]:
    """A module fixture's body: the running registries and an empty layout to push from."""
    require_tools()
    with registries(workdir) as r:
        yield r, Layout(workdir / "layout")
