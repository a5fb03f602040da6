"""Health checks as Docker's: the options (flags and Compose's healthcheck:), the timer's units,
and the status rules (start period, retries, one success)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdctr.log import SdctrError
from sdctr.options import run_options
from sdctr.paths import Paths
from sdctr.runtime import health
from sdctr.runtime.resolve import health_fields
from sdctr.spec import ContainerSpec
from sdctr.systemd.properties import Host, properties

pytestmark = pytest.mark.unit

SDCTR = ["/usr/bin/sdctr"]


def spec(**kw: object) -> ContainerSpec:
    return ContainerSpec(id="a" * 64, name="web", image="busybox", image_id="", command=("sleep", "1"),
                         **kw)  # type: ignore[arg-type]


def test_flags_and_compose_mapping_ask_the_same() -> None:
    flags = run_options({"image": "b", "health_cmd": "wget -q localhost", "health_interval": "2s",
                         "health_retries": "2", "health_timeout": "1.5", "health_start_period": "60s"})
    check = {"test": "wget -q localhost", "interval": "2s", "retries": 2, "timeout": "1500ms",
             "start_period": "1m"}
    yaml = run_options({"image": "b", "healthcheck": check}, yaml=True)
    assert flags.replace(detach=True) == yaml
    assert health_fields(yaml) == {"health_cmd": ("/bin/sh", "-c", "wget -q localhost"),
                                   "health_interval": 2.0, "health_timeout": 1.5, "health_start_period": 60.0,
                                   "health_retries": 2, "health_on_failure": "none"}
    assert health_fields(run_options({"image": "b"})) == {"health_cmd": (), "health_on_failure": "none"}


@pytest.mark.parametrize(("test", "argv"), [
    (["CMD", "wget", "-q", "x"], ("wget", "-q", "x")), (["CMD-SHELL", "a && b"], ("/bin/sh", "-c", "a && b")),
    (["NONE"], ()), ("exit 1", ("/bin/sh", "-c", "exit 1"))])
def test_compose_test_forms(test: object, argv: tuple[str, ...]) -> None:
    assert run_options({"image": "b", "healthcheck": {"test": test}}, yaml=True).health_cmd == argv


@pytest.mark.parametrize(("check", "message"), [
    ({"test": ["RUN", "x"]}, "a list starts with CMD"), ({"tset": "x"}, "unknown key 'tset'"),
    ({"interval": "soon"}, "healthcheck.interval 'soon' is not a duration"),
    ({"retries": 0}, "healthcheck.retries '0' is not a positive whole number"), ("x", "takes a mapping")])
def test_bad_healthchecks_name_the_key(check: object, message: str) -> None:
    with pytest.raises(SdctrError, match=message):
        run_options({"image": "b", "healthcheck": check}, yaml=True)


def test_the_unit_starts_the_timer_after_the_container_runs() -> None:
    with_check = dict((n, v) for n, _, v in properties(spec(health_cmd=("true",)), Host(1, 252), SDCTR))
    assert with_check["ExecStartPost"] == [("/usr/bin/sdctr", [*SDCTR, "hook", "health", "a" * 64], True)]
    assert "ExecStartPost" not in {n for n, _, _ in properties(spec(), Host(1, 252), SDCTR)}


def test_the_timer_is_bound_to_the_container() -> None:
    s = spec(health_cmd=("true",), health_interval=2.5)
    timer, service = (dict((n, v) for n, _, v in ps) for ps in health.timer_properties(s, SDCTR))
    assert health.timer_unit(s) == f"ctr-{'a' * 12}-health.timer"
    assert timer["BindsTo"] == [s.unit] and timer["OnUnitInactiveSec"] == 2_500_000
    # its exit status ignored (ExecStart=-): an unhealthy container is no failed unit of ours
    assert service["ExecStart"] == [("/usr/bin/sdctr", [*SDCTR, "healthcheck", "run", "a" * 64], True)]


def test_status_rules(tmp_path: Path) -> None:
    paths = Paths.from_root(str(tmp_path))
    s = spec(health_cmd=("true",), health_retries=3, health_start_period=10)
    health._write(paths, s.id, {"Status": "starting", "FailingStreak": 0, "Log": [], "Started": 1000.0})
    result = {"ExitCode": 1, "Output": "no"}
    # failures inside the start period do not count
    assert health.record(paths, s, result, False, 1005.0) == "starting"
    assert health.read(paths, s.id)["FailingStreak"] == 0  # type: ignore[index]
    # after it, the third consecutive failure makes it unhealthy
    assert health.record(paths, s, result, False, 1011.0) == "starting"
    assert health.record(paths, s, result, False, 1012.0) == "starting"
    assert health.record(paths, s, result, False, 1013.0) == "unhealthy"
    # one success: healthy, the streak reset; the log keeps the last five
    assert health.record(paths, s, {"ExitCode": 0}, True, 1014.0) == "healthy"
    state = health.read(paths, s.id)
    assert state is not None and state["FailingStreak"] == 0 and len(state["Log"]) == 5


@pytest.mark.parametrize(("flags", "image", "expected"), [
    ({}, {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 5_000_000_000, "Retries": 2},
     {"health_cmd": ("/bin/sh", "-c", "curl -f x"), "health_interval": 5.0, "health_retries": 2}),
    ({}, {"Test": ["CMD", "/bin/check", "-q"]}, {"health_cmd": ("/bin/check", "-q")}),
    ({}, {"Test": ["NONE"]}, {"health_cmd": ()}),
    # a flag wins over the image's, field by field, as Docker merges them
    ({"health_interval": "1s"}, {"Test": ["CMD", "c"], "Interval": 5_000_000_000, "Timeout": 2_000_000_000},
     {"health_cmd": ("c",), "health_interval": 1.0, "health_timeout": 2.0}),
    ({"health_cmd": "mine"}, {"Test": ["CMD", "c"]}, {"health_cmd": ("/bin/sh", "-c", "mine")}),
])
def test_the_images_healthcheck(flags: dict[str, str], image: dict[str, object],
                                expected: dict[str, object]) -> None:
    merged = health_fields(run_options({"image": "b", **flags}), image)
    assert merged == {**expected, "health_on_failure": "none"}


@pytest.mark.parametrize(("action", "call"), [("restart", ("enqueue", "RestartUnit")),
                                              ("stop", ("enqueue", "StopUnit")), ("kill", ("kill", 9))])
def test_on_failure_acts_on_the_unit(monkeypatch: pytest.MonkeyPatch, action: str,
                                     call: tuple[str, object]) -> None:
    from sdctr.systemd import manager

    calls: list[tuple[str, object]] = []

    class Fake:
        def enqueue(self, method: str, unit: str) -> None:
            calls.append(("enqueue", method))

        def kill(self, unit: str, signal: int, who: str = "main") -> None:
            calls.append(("kill", signal))

    monkeypatch.setattr(manager, "Systemd", Fake)
    health.act(spec(health_cmd=("true",), health_on_failure=action))
    assert calls == [call]
    options = run_options({"image": "b", "healthcheck": {"on_failure": action}}, yaml=True)
    assert options.health_on_failure == action
