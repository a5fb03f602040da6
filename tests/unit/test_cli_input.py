"""Exact input handling (issue 14): no option matched by a prefix, ids the kernel takes, one line
for a user who is not root, Docker's exit status for a container that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdctr.cli.parser import build_parser
from sdctr.log import SdctrError, set_debug
from sdctr.main import main
from sdctr.options import MAX_ID, parse_user


@pytest.mark.parametrize("argv", [
    ["run", "--pid", "host", "busybox", "true"],  # was taken as --pids-limit host
    ["run", "--mem", "64m", "busybox", "true"],  # was taken as --memory
    ["logs", "--foll", "x"],
])
def test_options_are_never_matched_by_a_prefix(argv: list[str]) -> None:
    with pytest.raises(SdctrError, match="unrecognized arguments"):
        build_parser(only=argv[0] if argv[0] in ("run", "create") else None).parse_args(argv)


def test_short_options_still_combine() -> None:
    args = build_parser(only="run").parse_args(["run", "-dit", "busybox", "sh"])
    assert (args.detach, args.interactive, args.tty) == (True, True, True)


@pytest.mark.parametrize("value", ["4294967295", "99999999999", "0:4294967295", "app:99999999999"])
def test_ids_beyond_the_kernels_are_refused(value: str) -> None:
    # 4294967295 is (uid_t)-1, setresuid's "leave unchanged": it ran the command as root
    with pytest.raises(SdctrError) as e:
        parse_user("--user", value)
    assert "\n" not in str(e.value) and "is not a user or group id" in str(e.value)


@pytest.mark.parametrize("value", ["0", str(MAX_ID), "1000:1000", "app", "app:staff", "nobody:65534"])
def test_ids_and_names_pass(value: str) -> None:
    assert parse_user("--user", value) == value


def test_a_user_who_is_not_root_gets_one_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    set_debug(False)  # another test's --debug would show the traceback
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.delenv("SDCTR_ROOT", raising=False)
    assert main(["ps"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("sdctr: error: sdctr needs root") and "Traceback" not in err


def test_a_permission_error_without_root_is_the_same_line(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    def denied(_: object) -> int:
        raise PermissionError(13, "Permission denied", "/var/lib/sdctr")

    set_debug(False)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("sdctr.cli.parser.run", denied)
    assert main(["--root", str(tmp_path), "ps"]) == 125
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("sdctr: error: sdctr needs root")
    assert "internal error" not in err and "/var/lib/sdctr" in err


# What the Docker CLI exits with when the daemon answers "No such container" (or, for inspect,
# "No such object"): docker/cli cmd/docker/docker.go exits 1 for every error that is not a
# cli.StatusError, and only `run`/`create` wrap theirs in one (125). So 1 for every verb below.
DOCKER_MISSING_CONTAINER_STATUS = {
    "start": 1, "stop": 1, "restart": 1, "kill": 1, "rm": 1, "wait": 1, "inspect": 1,
    "logs": 1, "top": 1, "export": 1, "exec": 1,
}


@pytest.mark.parametrize(("verb", "status"), sorted(DOCKER_MISSING_CONTAINER_STATUS.items()))
def test_a_missing_container_exits_as_docker_does(verb: str, status: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    class NoSystemd:  # the container is looked up before systemd is asked anything
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"systemd asked for {name}")

    monkeypatch.setattr("sdctr.cli.containers.systemd_of", lambda args: (NoSystemd(), None))
    argv = [verb, "nosuch"] + (["true"] if verb == "exec" else [])
    assert main(["--root", str(tmp_path), *argv]) == status
    err = capsys.readouterr().err
    assert len(err.splitlines()) <= 2 and "no such" in err.splitlines()[0], err


# --- logs --since/--until: Docker's forms (docker/cli opts: GetTimestamp) -----------------------

NOW = 1_767_348_000.0  # 2026-01-02T10:00:00Z


@pytest.mark.parametrize(("value", "expected"), [
    ("2s", NOW - 2), ("10m", NOW - 600), ("1h30m", NOW - 5400), ("1.5h", NOW - 5400),
    ("500ms", NOW - 0.5), ("1767348000", NOW), ("1767347000.25", NOW - 999.75),
    ("2026-01-02T10:00:00Z", NOW), ("2026-01-02T11:00:00+01:00", NOW),
    ("2026-01-02T09:59:59.123456789Z", NOW - 0.876544),
])
def test_log_times_take_dockers_forms(value: str, expected: float) -> None:
    from sdctr.runtime.logs import parse_time

    assert parse_time("--since", value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["yesterday", "10x", "-10min", "2026-13-01", ""])
def test_a_bad_log_time_is_sdctrs_own_line(value: str) -> None:
    from sdctr.runtime.logs import parse_time

    with pytest.raises(SdctrError, match=r"--since .* is not a time"):
        parse_time("--since", value, now=NOW)


def test_log_times_reach_journalctl_as_unix_seconds() -> None:
    from sdctr.runtime.logs import journalctl_argv

    class Spec:
        unit = "ctr-0123456789ab.service"
        id = "0123456789ab" + "0" * 52

    argv = journalctl_argv(Spec(), False, None, "1767348000.5", until="1767348001.5")  # type: ignore[arg-type]
    assert argv[-4:] == ["--since", "@1767348000", "--until", "@1767348002"]


def test_a_foreground_runs_copy_is_one_native_entry_a_line() -> None:
    """The copy the CLI journals for a foreground run: a value with a newline goes by length (the
    native protocol), plain ones as KEY=value; `sdctr logs` matches the unit's own lines or,
    from root, the copy's field."""
    from sdctr.init.journal import FOREGROUND_FIELD, native_entry
    from sdctr.runtime.logs import journalctl_argv

    assert native_entry({"MESSAGE": b"a=b", "PRIORITY": "3"}) == b"MESSAGE=a=b\nPRIORITY=3\n"
    assert native_entry({"MESSAGE": b"x\ny"}) == b"MESSAGE\n" + (3).to_bytes(8, "little") + b"x\ny\n"

    class Spec:
        unit = "ctr-0123456789ab.service"
        id = "0123456789ab" + "0" * 52

    argv = journalctl_argv(Spec(), False, None, None)  # type: ignore[arg-type]
    assert argv[-4:] == [f"_SYSTEMD_UNIT={Spec.unit}", "+", f"{FOREGROUND_FIELD}={Spec.id}", "_UID=0"]
