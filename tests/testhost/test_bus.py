"""sdctr's line to systemd, both kinds: systemd's own socket (what root uses) and the system bus
through the bus daemon (what anything else gets). A job is followed to its end by the
JobRemoved signal on both: systemd sends it unasked on its own socket, the daemon only after a
match rule."""

from __future__ import annotations

import json

import pytest
from helpers.testhost import Machine

pytestmark = pytest.mark.testhost

SCRIPT = r"""
import json, sys
from sdctr.log import SdctrError
from sdctr.systemd.manager import Systemd
from sdctr.systemd.properties import Host

sd = Systemd(direct=sys.argv[1] == "direct")
host = Host(cgroup_version=1, systemd_version=sd.version())
seen = {"direct": sd._bus.direct}

def unit(*argv, kind="exec"):
    return [("Type", "s", kind), ("ExecStart", "a(sasb)", [(argv[0], list(argv), False)]),
            ("CollectMode", "s", "inactive-or-failed")]

sd.start_transient("bus-test-sleep.service", unit("/bin/sleep", "30"), host)
seen["started"] = sd.active_state("bus-test-sleep.service")
sd.stop("bus-test-sleep.service")
seen["stopped"] = sd.active_state("bus-test-sleep.service")
try:
    sd.start_transient("bus-test-false.service", unit("/bin/false", kind="oneshot"), host)
    seen["failed"] = "no error"
except SdctrError as e:
    seen["failed"] = str(e)
print(json.dumps(seen))
"""


@pytest.mark.parametrize("kind", ["direct", "system-bus"])
def test_jobs_are_followed_to_their_end(testhost: Machine, kind: str) -> None:
    seen = json.loads(testhost.exec("python3", "-c", SCRIPT, kind).stdout)
    assert seen["direct"] is (kind == "direct")
    assert seen["started"] == "active"
    assert seen["stopped"] == "inactive"
    assert seen["failed"].startswith("bus-test-false.service failed to start (result: ")
