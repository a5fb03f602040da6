"""Which cgroup directories a container sees at /sys/fs/cgroup (sdctr.init.standard.unit_cgroups):
the unit's own, in each hierarchy that has it, found from /proc/self/cgroup and mountinfo."""

from __future__ import annotations

from sdctr.init.standard import unit_cgroups

UNIT = "/sdctr.slice/ctr-0123456789ab.service"

V1_CGROUP = f"""12:name=systemd:{UNIT}
11:memory:{UNIT}
10:cpu,cpuacct:{UNIT}
9:freezer:/
8:blkio:/sdctr.slice
0::{UNIT}
"""
V1_MOUNTINFO = """25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:1 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:1 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:1 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:1 - cgroup cgroup rw,cpu,cpuacct
32 25 0:29 / /sys/fs/cgroup/freezer rw,nosuid shared:1 - cgroup cgroup rw,freezer
33 25 0:30 / /sys/fs/cgroup/blkio rw,nosuid shared:1 - cgroup cgroup rw,blkio
40 21 0:40 / /var/lib/other rw - ext4 /dev/sda1 rw
"""


def test_v1_the_units_own_hierarchies_only() -> None:
    found = dict((sub, directory) for directory, sub in unit_cgroups(V1_CGROUP, V1_MOUNTINFO))
    assert found == {"/unified": f"/sys/fs/cgroup/unified{UNIT}",
                     "/systemd": f"/sys/fs/cgroup/systemd{UNIT}",
                     "/memory": f"/sys/fs/cgroup/memory{UNIT}",
                     "/cpu,cpuacct": f"/sys/fs/cgroup/cpu,cpuacct{UNIT}"}  # not freezer (/), blkio (a slice)


def test_v2_one_directory_at_the_top() -> None:
    mountinfo = "25 24 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    assert unit_cgroups(f"0::{UNIT}\n", mountinfo) == [(f"/sys/fs/cgroup{UNIT}", "")]


def test_a_hierarchy_mounted_from_a_subdirectory() -> None:
    """A test host's (or a nested container's) mount whose root is not the hierarchy's."""
    mountinfo = "25 24 0:22 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert unit_cgroups(f"0::/outer{UNIT}\n", mountinfo) == [(f"/sys/fs/cgroup{UNIT}", "")]
    assert unit_cgroups(f"0::/elsewhere{UNIT}\n", mountinfo) == []  # not under the mount's root


def test_outside_any_unit_nothing() -> None:
    assert unit_cgroups("0::/\n", "25 24 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n") == []
