"""Flag values a Docker user types, and the one-line errors for the ones that are wrong."""

from __future__ import annotations

import pytest

from sdctr import spec
from sdctr.log import SdctrError
from sdctr.spec import ContainerSpec, Mount, Resources, RestartPolicy


@pytest.mark.parametrize(("value", "expected"), [
    ("64m", 64 * 1024**2), ("1g", 1024**3), ("512k", 512 * 1024), ("1048576", 1048576),
    ("1.5g", int(1.5 * 1024**3)), ("256MB", 256 * 1024**2), ("100b", 100),
])
def test_sizes(value: str, expected: int) -> None:
    assert spec.parse_size("--memory", value) == expected


@pytest.mark.parametrize("value", ["10xb", "", "m", "-5m", "1..2g", "ten"])
def test_bad_sizes_name_the_flag_and_show_examples(value: str) -> None:
    with pytest.raises(SdctrError) as e:
        spec.parse_memory(value)
    assert f"--memory {value!r} is not a size" in str(e.value)
    assert e.value.hint and "512m" in e.value.hint
    assert e.value.status == 125


def test_memory_has_dockers_minimum() -> None:
    with pytest.raises(SdctrError, match="minimum of 6m"):
        spec.parse_memory("1m")


@pytest.mark.parametrize(("value", "ok"), [("512", True), ("2", True), ("262144", True),
                                          ("1", False), ("262145", False), ("abc", False), ("-3", False)])
def test_cpu_shares_range(value: str, ok: bool) -> None:
    if ok:
        assert spec.parse_cpu_shares(value) == int(value)
    else:
        with pytest.raises(SdctrError, match="--cpu-shares"):
            spec.parse_cpu_shares(value)


def test_restart_policies_and_their_behaviour() -> None:
    assert spec.parse_restart("on-failure:3") is RestartPolicy.ON_FAILURE
    assert RestartPolicy.ON_FAILURE.restarts_on(1) and not RestartPolicy.ON_FAILURE.restarts_on(0)
    assert RestartPolicy.ALWAYS.restarts_on(0)
    assert not RestartPolicy.NO.restarts_on(1)
    assert RestartPolicy.UNLESS_STOPPED.systemd_restart() == "always"
    with pytest.raises(SdctrError, match="not a restart policy") as e:
        spec.parse_restart("sometimes")
    assert e.value.hint == "one of no, on-failure, always, unless-stopped"


@pytest.mark.parametrize(("value", "expected"), [
    ("/srv:/data", Mount("/srv", "/data", False)), ("/srv:/data:ro", Mount("/srv", "/data", True)),
])
def test_volumes(value: str, expected: Mount) -> None:
    assert spec.parse_mount(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("/srv", "is not SRC:DST"), ("named:/data", "absolute host path"), ("/srv:/", "other than /"),
    ("/srv:data", "absolute path"), ("/srv:/data:rx", "not ro or rw"),
])
def test_bad_volumes(value: str, message: str) -> None:
    with pytest.raises(SdctrError, match=message):
        spec.parse_mount(value)


def test_env_pass_through_and_merge_order() -> None:
    assert spec.parse_env(["A=1", "HOME", "MISSING"], {"HOME": "/root"}) == ["A=1", "HOME=/root"]
    with pytest.raises(SdctrError, match="not KEY=VALUE"):
        spec.parse_env(["=x"], {})
    merged = spec.merge_env(["PATH=/bin", "A=image"], ["A=user", "B=2"])
    assert merged == ("PATH=/bin", "A=user", "B=2")


def test_env_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\n\nB=two words\n")
    assert spec.read_env_file(str(f), {}) == ["A=1", "B=two words"]
    with pytest.raises(SdctrError, match=r"--env-file .*No such file"):
        spec.read_env_file(str(tmp_path / "nope"), {})


def test_capabilities() -> None:
    default = spec.resolve_capabilities([], [])
    assert set(default) == set(spec.DEFAULT_CAPS)
    added = spec.resolve_capabilities(["net_admin"], ["CAP_CHOWN", "mknod"])
    assert "CAP_NET_ADMIN" in added and "CAP_CHOWN" not in added and "CAP_MKNOD" not in added
    assert spec.resolve_capabilities([], ["ALL"]) == ()
    assert "CAP_SYS_ADMIN" in spec.resolve_capabilities(["ALL"], [])
    with pytest.raises(SdctrError, match="unknown capability 'CAP_FLY'"):
        spec.resolve_capabilities(["fly"], [])


@pytest.mark.parametrize("name", ["web", "web-1", "a.b_c"])
def test_good_names(name: str) -> None:
    assert spec.check_name(name) == name


@pytest.mark.parametrize("name", ["-web", "we b", "x/y", ""])
def test_bad_names(name: str) -> None:
    with pytest.raises(SdctrError, match="not a valid container name"):
        spec.check_name(name)


def test_spec_round_trips_through_json() -> None:
    s = ContainerSpec(id="a" * 64, name="web", image="busybox:latest", image_id="b" * 64,
                      command=("sh", "-c", "echo hi"), env=("A=1",), mounts=(Mount("/s", "/d", True),),
                      resources=Resources(cpu_shares=512, memory=64 << 20), restart=RestartPolicy.ALWAYS)
    assert ContainerSpec.from_json(s.to_json()) == s
    assert s.unit == "ctr-aaaaaaaaaaaa.service"
