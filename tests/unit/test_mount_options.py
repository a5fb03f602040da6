"""--mount and --tmpfs as Docker spells them, with one clear error for what is not."""

from __future__ import annotations

import pytest

from sdctr import options as opts
from sdctr.init.standard import tmpfs_options
from sdctr.linux import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY
from sdctr.log import SdctrError
from sdctr.spec import Mount

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("value", "expected"), [
    ("type=bind,source=/srv,target=/data", Mount("/srv", "/data")),
    ("type=bind,src=/srv,dst=/data,readonly", Mount("/srv", "/data", True)),
    ("type=bind,src=/srv,destination=/data,ro=true", Mount("/srv", "/data", True)),
    ("type=volume,source=cache,target=/c", Mount("cache", "/c", kind="volume")),
    ("src=cache,target=/c,volume-nocopy", Mount("cache", "/c", kind="volume", options="nocopy")),
    ("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770", Mount("", "/t", kind="tmpfs",
                                                                 options="size=67108864,mode=1770")),
])
def test_mount(value: str, expected: Mount) -> None:
    assert opts.parse_mount_option("--mount", value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("type=bind,src=/a,dst=/b,foo=1", "unknown key 'foo'"),
    ("type=nfs,src=/a,dst=/b", "type 'nfs' is not bind, volume or tmpfs"),
    ("type=bind,src=rel,dst=/b", "absolute host path"),
    ("type=bind,src=/a", "absolute path other than /"),
    ("type=volume,target=/b", "needs a source"),
    ("type=tmpfs,src=/a,dst=/b", "has no source"),
    ("type=bind,src=/a,dst=/b,readonly=maybe", "'maybe' is not true or false"),
    ("type=bind,src=/a,dst=/b,bind-propagation=shared", "rprivate"),
])
def test_bad_mount(value: str, message: str) -> None:
    with pytest.raises(SdctrError, match=message):
        opts.parse_mount_option("--mount", value)


def test_tmpfs() -> None:
    assert opts.parse_tmpfs("--tmpfs", "/run") == Mount("", "/run", kind="tmpfs")
    assert opts.parse_tmpfs("--tmpfs", "/run:size=1m,exec").options == "size=1m,exec"
    with pytest.raises(SdctrError, match="unknown tmpfs option 'bogus'"):
        opts.parse_tmpfs("--tmpfs", "/run:bogus")
    with pytest.raises(SdctrError, match="other than /"):
        opts.parse_tmpfs("--tmpfs", "run")
    flags, data = tmpfs_options("size=1m,exec,ro")
    assert flags == MS_NOSUID | MS_NODEV | MS_RDONLY and data == "size=1m"
    assert tmpfs_options("")[0] == MS_NOSUID | MS_NODEV | MS_NOEXEC


def test_the_table_has_the_keys() -> None:
    yaml = opts.run_options({"image": "busybox", "tmpfs": ["/t"], "mounts": ["type=volume,src=vol,dst=/v"]},
                            yaml=True)
    assert yaml.tmpfs == (Mount("", "/t", kind="tmpfs"),)
    assert yaml.mounts == (Mount("vol", "/v", kind="volume"),)
