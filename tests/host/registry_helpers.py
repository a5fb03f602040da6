"""A real registry for host-tier tests: Debian's docker-registry (distribution 2.8) inside a network
namespace of the test's own, listening on loopback only, filled with skopeo from OCI layouts this
module writes by hand (the input only: pulling is what the tests prove).

Three registries: plain on 127.0.0.1:5000, htpasswd auth on :5001, and a plain one on :5002 that
tests configure as a mirror. In the namespace, ``registry.test`` names 127.0.0.1 (``ip netns exec``
mounts /etc/netns/<ns>/hosts over /etc/hosts), so a registry can be reached by a name that is not
loopback by address, as an insecure registry on the network would be; DNS goes to 127.0.0.1 too,
so no lookup leaves the namespace.

Needs (Debian): docker-registry, skopeo, apache2-utils (htpasswd -B), busybox-static.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rootfs_helpers import build_busybox_rootfs

REPO = Path(__file__).resolve().parents[2]
PLAIN_PORT = 5000
AUTH_PORT = 5001
MIRROR_PORT = 5002
PLAIN, AUTHED, MIRROR = (f"127.0.0.1:{port}" for port in (PLAIN_PORT, AUTH_PORT, MIRROR_PORT))
HOST_NAME = "registry.test"
USER, PASSWORD = "tester", "s3cret-pw"
TOOLS = ("ip", "docker-registry", "skopeo", "htpasswd")

PULL_SCRIPT = """
import json, sys
from sdctr import progress, registry
from sdctr.log import SdctrError
from sdctr.state import Paths
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
    import pytest

    if missing_tools():
        why = (f"needs {', '.join(missing_tools())} "
               "(apt-get install docker-registry skopeo apache2-utils busybox-static)")
        if os.environ.get("SDCTR_TESTS_STRICT") == "1":
            pytest.fail(why)
        pytest.skip(why)


def run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True, **kw)


# --- OCI layouts, written by hand --------------------------------------------------------------------

def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_dir(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(p), arcname=str(p.relative_to(root)))
            info.mtime = 0
            if info.isreg():
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _tar_files(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class Variant:
    arch: str
    env: tuple[str, ...]
    cmd: tuple[str, ...]
    layers: tuple[bytes, ...]  # uncompressed tars, bottom first


class Layout:
    """An OCI image layout directory; each tag names one image or (several variants) an index."""

    def __init__(self, root: Path):
        self.root = root
        (root / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self.index: dict[str, Any] = {"schemaVersion": 2, "manifests": []}

    def _blob(self, data: bytes) -> str:
        digest = _sha(data)
        (self.root / "blobs/sha256" / digest.split(":")[1]).write_bytes(data)
        return digest

    def _image(self, v: Variant) -> dict[str, Any]:
        descs, diff_ids = [], []
        for tar in v.layers:
            gz = gzip.compress(tar, mtime=0)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                          "digest": self._blob(gz), "size": len(gz)})
            diff_ids.append(_sha(tar))
        config = json.dumps({
            "created": "2024-01-01T00:00:00Z", "architecture": v.arch, "os": "linux",
            "config": {"Env": list(v.env), "Cmd": list(v.cmd), "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self._blob(config), "size": len(config)},
            "layers": descs,
        }).encode()
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self._blob(manifest),
                "size": len(manifest), "platform": {"os": "linux", "architecture": v.arch}}

    def add(self, tag: str, variants: Sequence[Variant]) -> None:
        descs = [self._image(v) for v in variants]
        if len(descs) == 1:
            desc = descs[0]
        else:
            index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                "manifests": descs}).encode()
            desc = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": self._blob(index),
                    "size": len(index)}
        self.index["manifests"].append({**desc, "annotations": {"org.opencontainers.image.ref.name": tag}})
        (self.root / "index.json").write_text(json.dumps(self.index))


def busybox_layer(tmp: Path) -> bytes:
    return _tar_dir(build_busybox_rootfs(tmp / "busybox-rootfs"))


def small_layer(name: str, content: bytes) -> bytes:
    return _tar_files({f"etc/{name}": content})


# --- the registry in its network namespace -----------------------------------------------------------

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


@dataclasses.dataclass
class Registries:
    netns: str
    workdir: Path
    storage: dict[int, Path]
    procs: list[subprocess.Popen[bytes]]

    def exec(self, cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.netns, *cmd], **kw)

    def push(self, layout: Path, tag: str, dest: str, *, fmt: str | None = None, all_: bool = False,
             creds: str | None = None) -> None:
        cmd = ["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false"]
        cmd += ["--format", fmt] if fmt else []
        cmd += ["--all"] if all_ else []
        cmd += ["--dest-creds", creds] if creds else []
        self.exec([*cmd, f"oci:{layout}:{tag}", f"docker://{dest}"])

    def blob_file(self, port: int, digest: str) -> Path:
        hexd = digest.split(":")[1]
        return self.storage[port] / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

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
        for line in (self.workdir / f"registry-{port}.log").read_text().splitlines():
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
        cmd = ["ip", "netns", "exec", self.netns, sys.executable, "-m", "sdctr", "--root", str(root), *args]
        return subprocess.run(cmd, env=self.env(env), cwd=REPO, input=input, text=True, capture_output=True,
                              timeout=120, **kw)


def _wait_listening(netns: str, port: int, log: Path, proc: subprocess.Popen[bytes]) -> None:
    probe = ("import socket, sys, time\n"
             "for _ in range(200):\n"
             "    try:\n"
             f"        socket.create_connection(('127.0.0.1', {port}), 0.5).close(); sys.exit(0)\n"
             "    except OSError:\n"
             "        time.sleep(0.05)\n"
             "sys.exit(1)\n")
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", probe])
    if done.returncode != 0 or proc.poll() is not None:
        raise RuntimeError(f"docker-registry on port {port} did not start: {log.read_text()}")


def start_registries(workdir: Path) -> Generator[Registries, None, None]:
    """A generator fixture body: a netns with lo up, a plain registry on 127.0.0.1:5000, one with
    htpasswd (bcrypt) auth on 127.0.0.1:5001 and a plain one on 127.0.0.1:5002 (the mirror);
    everything is torn down when it resumes."""
    netns = f"sdctr-reg-{os.getpid()}-{time.monotonic_ns() % 100000}"
    procs: list[subprocess.Popen[bytes]] = []
    etc = Path("/etc/netns")
    made_etc = not etc.exists()
    run(["ip", "netns", "add", netns])
    try:
        (etc / netns).mkdir(parents=True)
        (etc / netns / "hosts").write_text(f"127.0.0.1 localhost {HOST_NAME}\n")
        (etc / netns / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"])
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(run(["htpasswd", "-Bbn", USER, PASSWORD]).stdout)
        storage = {}
        for port in (PLAIN_PORT, AUTH_PORT, MIRROR_PORT):
            storage[port] = workdir / f"storage-{port}"
            storage[port].mkdir()
            auth = (f"auth:\n  htpasswd:\n    realm: sdctr-test\n    path: {htpasswd}\n"
                    if port == AUTH_PORT else "")
            config = workdir / f"config-{port}.yml"
            config.write_text(REGISTRY_CONFIG.format(storage=storage[port], port=port, auth=auth))
            log = workdir / f"registry-{port}.log"
            with open(log, "wb") as logf:
                cmd = ["ip", "netns", "exec", netns, "docker-registry", "serve", str(config)]
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
            procs.append(proc)
            _wait_listening(netns, port, log, proc)
        yield Registries(netns, workdir, storage, procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(etc / netns, ignore_errors=True)
        if made_etc:
            with contextlib.suppress(OSError):  # another test's namespace may use it by now
                etc.rmdir()


@contextlib.contextmanager
def registries_with_layout(workdir: Path) -> Iterator[tuple[Registries, Layout]]:
    """A module fixture's body: the running registries and an empty layout to push from."""
    require_tools()
    gen = start_registries(workdir)
    try:
        yield next(gen), Layout(workdir / "layout")
    finally:
        gen.close()


def blob_files(root: Path) -> set[str]:
    d = root / "blobs/sha256"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()
