"""Health checks as Docker's: the options (flags and Compose's healthcheck:), what the unit
tells systemd (readiness, watchdog, status), and the status rules (start period, retries, one
success)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdctr.init import health
from sdctr.log import SdctrError
from sdctr.options import run_options
from sdctr.paths import Paths
from sdctr.runtime.resolve import health_fields
from sdctr.spec import ContainerSpec, RestartPolicy
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


def test_the_unit_waits_for_the_check_and_its_watchdog_acts() -> None:
    def props(**kw: object) -> dict[str, object]:
        return {n: v for n, _, v in properties(spec(**kw), Host(1, 252), SDCTR)}

    none = props(health_cmd=("true",), health_interval=2.0, health_timeout=1.0, health_retries=3)
    # no timer unit and no ExecStartPost: the init's helper runs the checks and notifies
    assert "ExecStartPost" not in none and none["NotifyAccess"] == "all"
    # READY=1 comes after the first pass: the start may take the start period and the retries
    assert none["TimeoutStartUSec"] == (3 * (2 + 1) + 60) * 1_000_000
    assert "WatchdogUSec" not in none and none["Restart"] == "no"  # Docker's: unhealthy runs on
    restart = props(health_cmd=("true",), health_interval=2.0, health_timeout=1.0,
                    health_on_failure="restart")
    assert restart["WatchdogUSec"] == (2 + 1 + 10) * 1_000_000 and restart["WatchdogSignal"] == 15
    assert restart["Restart"] == "on-watchdog"
    kill = props(health_cmd=("true",), health_on_failure="kill", restart=RestartPolicy.ALWAYS)
    assert kill["WatchdogSignal"] == 9 and kill["Restart"] == "always"
    assert "TimeoutStartUSec" not in props()


def test_status_text_says_how_many_failures_are_left() -> None:
    s = spec(health_cmd=("true",), health_retries=3)
    assert health.status_text(s, {"Status": "healthy", "FailingStreak": 0}) == "healthy 3/3"
    assert health.status_text(s, {"Status": "healthy", "FailingStreak": 1}) == "healthy 2/3"
    assert health.status_text(s, {"Status": "unhealthy", "FailingStreak": 3,
                                  "Log": [{"ExitCode": 1, "Output": "a\nno route\n"}]}) \
        == "unhealthy: no route"
    assert health.status_text(s, {"Status": "unhealthy", "FailingStreak": 3,
                                  "Log": [{"ExitCode": 7, "Output": ""}]}) == "unhealthy: exit status 7"


def test_status_rules(tmp_path: Path) -> None:
    paths = Paths.from_root(str(tmp_path))
    s = spec(health_cmd=("true",), health_retries=3, health_start_period=10)
    health._write(paths, s.id, {"Status": "starting", "FailingStreak": 0, "Log": [], "Started": 1000.0})
    result = {"ExitCode": 1, "Output": "no"}
    # failures inside the start period do not count
    assert health.record(paths, s, result, False, 1005.0)["Status"] == "starting"
    assert health.read(paths, s.id)["FailingStreak"] == 0  # type: ignore[index]
    # after it, the third consecutive failure makes it unhealthy
    assert health.record(paths, s, result, False, 1011.0)["Status"] == "starting"
    assert health.record(paths, s, result, False, 1012.0)["Status"] == "starting"
    assert health.record(paths, s, result, False, 1013.0)["Status"] == "unhealthy"
    # one success: healthy, the streak reset; the log keeps the last five
    assert health.record(paths, s, {"ExitCode": 0}, True, 1014.0)["Status"] == "healthy"
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


@pytest.mark.parametrize("action", ["none", "kill", "restart", "stop"])
def test_on_failure_in_the_yaml(action: str) -> None:
    options = run_options({"image": "b", "healthcheck": {"on_failure": action}}, yaml=True)
    assert options.health_on_failure == action


@pytest.mark.parametrize(("mode", "checked", "message"), [
    ("conmon", False, "READY=1\nMAINPID=7"), ("conmon", True, "MAINPID=7\nSTATUS=starting"),
    ("ignore", True, "READY=1\nMAINPID=7"),
    ("container", False, "MAINPID=7\nSTATUS=waiting for the container's READY=1")])
def test_who_says_ready(mode: str, checked: bool, message: str) -> None:
    """podman's --sdnotify: the init's READY=1 at once, the health check's after its first pass,
    or the container's own."""
    from sdctr.init.standard import hand_over

    assert hand_over(spec(sdnotify=mode), 7, checked) == message


def test_sdnotify_option() -> None:
    assert run_options({"image": "b", "sdnotify": "container"}).sdnotify == "container"
    assert run_options({"image": "b", "sdnotify": "ignore"}, yaml=True).sdnotify == "ignore"
    with pytest.raises(SdctrError, match="--sdnotify 'healthy' is not a mode"):
        run_options({"image": "b", "sdnotify": "healthy"})
