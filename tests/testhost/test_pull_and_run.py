"""Images from a registry, run under systemd: `sdctr pull` and `sdctr run` inside a test host,
against Debian's docker-registry serving images that skopeo pushed. The registry runs in the test
host's own network namespace (nsenter -n), so it is 127.0.0.1:5000 there and nowhere else."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers.layout import Layout, Variant, busybox_layer, small_layer
from helpers.registries import InNetns, push, require_tools, serve_registry
from helpers.testhost import Machine, wait_for

pytestmark = pytest.mark.testhost

REGISTRY = "127.0.0.1:5000"
ENV = ("PATH=/bin", "WHO=registry")


@pytest.fixture(scope="module")
def registry(testhost: Machine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_tools()
    work = tmp_path_factory.mktemp("testhost-registry")
    netns = InNetns.of_process(testhost.state()["init_pid"])
    with serve_registry(netns, work, 5000):
        try:
            layout = Layout(work / "layout")
            base = busybox_layer(work)
            cmd = ("/bin/sh", "-c", "echo hello from $WHO; cat /etc/flavour")
            layout.add("oci", [Variant(_arch(), ENV, cmd, (base, small_layer("flavour", b"oci\n")))])
            layout.add("docker", [Variant(_arch(), ENV, cmd, (base, small_layer("flavour", b"docker\n")))])
            other = "arm64" if _arch() != "arm64" else "amd64"
            layout.add("multi", [Variant(_arch(), ENV, cmd, (base, small_layer("flavour", b"this host\n"))),
                                 Variant(other, ENV, cmd, (base, small_layer("flavour", b"another\n")))])
            push(netns, layout.root, "oci", f"{REGISTRY}/test/box:oci")
            push(netns, layout.root, "docker", f"{REGISTRY}/test/box:docker", fmt="v2s2")
            push(netns, layout.root, "multi", f"{REGISTRY}/test/box:multi", all_=True)
            yield REGISTRY
        finally:
            # what these tests pulled; the session's test host is shared with other modules
            testhost.sh(f"sdctr rmi -f {REGISTRY}/test/box:oci {REGISTRY}/test/box:docker "
                        f"{REGISTRY}/test/box:multi 2>/dev/null", check=False)


def _arch() -> str:
    from sdctr.image.store import host_architecture

    return host_architecture()


def test_pull_then_run_under_systemd(testhost: Machine, registry: str) -> None:
    pulled = testhost.exec("sdctr", "pull", f"{registry}/test/box:oci")
    assert f"Status: Downloaded newer image for {registry}/test/box:oci" in pulled.stdout
    images = testhost.exec("sdctr", "images").stdout
    assert f"{registry}/test/box" in images and "oci" in images
    inspect = ["sdctr", "image", "inspect", f"{registry}/test/box:oci"]
    size = json.loads(testhost.exec(*inspect).stdout)[0]["Size"]
    cid = testhost.exec("sdctr", "run", "-d", f"{registry}/test/box:oci").stdout.strip()
    # unpacked by the first container: SIZE is now what the layers hold, not what came over the wire
    unpacked = json.loads(testhost.exec(*inspect).stdout)
    assert unpacked[0]["Size"] > 1.5 * size
    unit = f"ctr-{cid[:12]}.service"
    wait_for(lambda: testhost.exec("systemctl", "show", "-p", "ActiveState", "--value", unit,
                                   check=False).stdout.strip() in ("inactive", "failed", ""),
             what=f"{unit} to finish")
    journal = testhost.exec("journalctl", "-u", unit, "-o", "cat").stdout
    assert "hello from registry" in journal and "oci" in journal.split("hello from registry", 1)[1]
    assert json.loads(testhost.exec("sdctr", "inspect", cid).stdout)[0]["State"]["ExitCode"] == 0
    testhost.exec("sdctr", "rm", cid)


def test_a_multi_platform_image_runs_this_hosts_variant(testhost: Machine, registry: str) -> None:
    r = testhost.exec("sdctr", "run", "--rm", f"{registry}/test/box:multi")
    assert r.stdout == "hello from registry\nthis host\n"


def test_run_pulls_a_missing_image(testhost: Machine, registry: str) -> None:
    ref = f"{registry}/test/box:docker"
    testhost.exec("sdctr", "rmi", "-f", ref, check=False)
    r = testhost.exec("sdctr", "run", "--rm", ref)
    # stdout is the container's alone; the pull talks on stderr, as `docker run` does
    assert r.stdout == "hello from registry\ndocker\n"
    assert f"Unable to find image '{ref}' locally" in r.stderr
    assert f"Status: Downloaded newer image for {ref}" in r.stderr
    # the second run finds it
    again = testhost.exec("sdctr", "run", "--rm", ref)
    assert again.stdout == "hello from registry\ndocker\n" and "Unable to find" not in again.stderr
    # --pull never with an image nobody has: one line, 125, nothing made
    missing = testhost.exec("sdctr", "run", "--pull", "never", f"{registry}/test/nothing:1", check=False)
    assert missing.returncode == 125 and "no such image" in missing.stderr
    unknown = testhost.exec("sdctr", "run", "--rm", f"{registry}/test/nothing:1", check=False)
    assert unknown.returncode == 125 and "test/nothing" in unknown.stderr
    assert testhost.exec("sdctr", "ps", "-aq").stdout == ""


def test_run_platform_pulls_that_platforms_variant(testhost: Machine, registry: str) -> None:
    """`run --platform` on a missing image pulls the variant asked for (its layers hold this host's
    busybox, so it runs here) and records that platform."""
    ref = f"{registry}/test/box:multi"
    other = "arm64" if _arch() != "arm64" else "amd64"
    testhost.exec("sdctr", "rmi", "-f", ref, check=False)
    r = testhost.exec("sdctr", "run", "--rm", "--platform", f"linux/{other}", ref)
    assert r.stdout == "hello from registry\nanother\n"
    assert json.loads(testhost.exec("sdctr", "image", "inspect", ref).stdout)[0]["Architecture"] == other
    bad = testhost.exec("sdctr", "run", "--rm", "--pull", "always", "--platform", "linux/s390x", ref,
                        check=False)
    assert bad.returncode == 125 and "linux/s390x" in bad.stderr
    testhost.exec("sdctr", "rmi", "-f", ref)  # the other tests expect this host's variant
