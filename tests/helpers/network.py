"""The test host as the network tests need it (tests/testhost/test_network*.py): a busybox image,
a page to serve, a page fetcher, and "the outside", a namespace inside the test host standing for
another machine, joined to it by a veth pair (198.51.100.0/24, TEST-NET-2: only ever inside the
test host), with a server there that writes down who connected."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator

from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine, wait_for

PAGE = "hello from a container"
# a page fetcher (the static busybox's wget crashes in this root) and a server that writes down
# who connected, for the "outside" namespace
GET = """#!/usr/bin/python3
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())
"""
WHO_CONNECTS = """#!/usr/bin/python3
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
c, peer = s.accept()
open(sys.argv[3], "w").write(peer[0])
"""
MAKE_IMAGE = f"""
set -e
chmod +x /usr/local/bin/get /usr/local/bin/who-connects
rm -rf /tmp/bb && sh -s /tmp/bb < /tmp/busybox-rootfs.sh >/dev/null
tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox >/dev/null
mkdir -p /tmp/www && echo '{PAGE}' > /tmp/www/index.html
"""
OUTSIDE_UP = """
set -e
ip netns add outside
ip link add sdtest0 type veth peer name eth0 netns outside
ip addr add 198.51.100.1/24 dev sdtest0 && ip link set sdtest0 up
ip -n outside addr add 198.51.100.2/24 dev eth0
ip -n outside link set eth0 up && ip -n outside link set lo up
"""
OUTSIDE_DOWN = "ip netns del outside; ip link del sdtest0"


@contextlib.contextmanager
def network_host(testhost: Machine, *, before: str = "", after: str = "",
                 timeout: float = 120) -> Iterator[Machine]:
    """The shared test host with the image, the fetcher, the outside server and "the outside"
    namespace; the script `before` run once they are there, `after` first on the way out."""
    for path, text in (("/tmp/busybox-rootfs.sh", BUSYBOX_ROOTFS_SH.read_text()),
                       ("/usr/local/bin/get", GET), ("/usr/local/bin/who-connects", WHO_CONNECTS)):
        testhost.exec("sh", "-c", f"cat > {path}", input=text)
    testhost.sh(MAKE_IMAGE)
    testhost.sh(OUTSIDE_UP)
    try:
        if before:
            testhost.sh(before, timeout=timeout)
        yield testhost
    finally:
        if after:
            testhost.sh(after, check=False)
        testhost.sh(OUTSIDE_DOWN, check=False)


def outside_server(host: Machine, address: str, port: int) -> Callable[[], str]:
    """who-connects listening in "the outside" on address:port; a function that waits for the
    address of whoever connects and returns it."""
    record = f"/tmp/peer{port}"
    host.sh(f"rm -f {record}; ip netns exec outside who-connects {address} {port} {record} >/dev/null 2>&1 &")
    wait_for(lambda: f":{port} " in host.exec("ip", "netns", "exec", "outside", "ss", "-ltn").stdout,
             what="the outside server")

    def recorded() -> str:
        return host.sh(f"cat {record} 2>/dev/null || true").stdout.strip()  # type: ignore[no-any-return]

    def peer() -> str:
        return wait_for(recorded, what="the peer")  # type: ignore[no-any-return]
    return peer


def httpd(host: Machine, *flags: str) -> str:
    """busybox httpd serving PAGE from a container on the default bridge; its id."""
    return host.exec("sdctr", "run", "-d", "--network", "bridge", *flags, "-v", "/tmp/www:/www",
                     "busybox", "httpd", "-f", "-p", "80", "-h", "/www").stdout.strip()


def inspect(host: Machine, cid: str) -> dict:  # type: ignore[type-arg]
    return json.loads(host.exec("sdctr", "inspect", cid).stdout)[0]  # type: ignore[no-any-return]
