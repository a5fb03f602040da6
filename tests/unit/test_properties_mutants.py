"""Unit properties, sharpened where tests/mutation found mutants that nothing noticed: the D-Bus
signatures systemd checks, quoting in unit files, the edges of the version and limit switches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sdctr.log import SdctrError
from sdctr.spec import ContainerSpec, Resources, RestartPolicy
from sdctr.systemd import properties as props_mod
from sdctr.systemd.properties import INFINITY, Host, cpu_weight, properties, sdctr_argv, unit_file

SDCTR = ["/usr/bin/sdctr"]


def web(**kw: object) -> ContainerSpec:
    base = dict(id="0123456789ab" + "c" * 52, name="web", image="nginx:latest", image_id="f" * 64,
                command=("nginx",), resources=Resources(cpu_shares=512, memory=256 * 1024**2),
                restart=RestartPolicy.ON_FAILURE, stop_timeout=10)
    base.update(kw)
    return ContainerSpec(**base)  # type: ignore[arg-type]

# The property types of org.freedesktop.systemd1(5) (Service and Unit interfaces), written out
# from the man page, not from our code: a wrong signature is refused by systemd at StartTransientUnit.
SYSTEMD_SIGNATURES = {
    "Description": "s", "Slice": "s", "Type": "s", "NotifyAccess": "s", "KillMode": "s",
    "ExecStartPre": "a(sasb)", "ExecStart": "a(sasb)", "ExecStop": "a(sasb)", "ExecStopPost": "a(sasb)",
    "TimeoutStopUSec": "t", "SuccessExitStatus": "(aiai)", "Restart": "s", "SyslogIdentifier": "s",
    "LogExtraFields": "aay", "TasksMax": "t",
    "CPUAccounting": "b", "IOAccounting": "b", "BlockIOAccounting": "b", "DevicePolicy": "s",
    "DeviceAllow": "a(ss)",
    "LogRateLimitIntervalUSec": "t", "CPUShares": "t", "CPUWeight": "t", "MemoryLimit": "t",
    "MemoryMax": "t", "CPUQuotaPerSecUSec": "t", "CollectMode": "s", "StandardInput": "s",
    "StandardOutput": "s", "StandardError": "s", "StandardInputFileDescriptor": "h",
    "StandardOutputFileDescriptor": "h", "StandardErrorFileDescriptor": "h",
    "RestartUSec": "t", "StartLimitIntervalUSec": "t", "StartLimitBurst": "u", "RestartSteps": "u",
    "RestartMaxDelayUSec": "t", "After": "as",
}


@pytest.mark.parametrize("cgroup", [1, 2])
@pytest.mark.parametrize("stdio", [None, (0, 1, 2)])
def test_every_property_has_the_signature_systemd_documents(cgroup: int, stdio: tuple[int, int, int] | None
                                                             ) -> None:
    spec = web(remove=True)
    got = properties(spec, Host(cgroup, 252), SDCTR, stdio)
    assert {name for name, _, _ in got} <= set(SYSTEMD_SIGNATURES)
    assert [(n, s) for n, s, _ in got] == [(n, SYSTEMD_SIGNATURES[n]) for n, _, _ in got]


def test_an_attached_run_keeps_every_other_property() -> None:
    got = {n: v for n, _, v in properties(web(), Host(1, 252), SDCTR, stdio=(5, 6, 7))}
    assert got["Description"] == "sdctr container web (nginx:latest)"
    assert (got["StandardInputFileDescriptor"], got["StandardOutputFileDescriptor"],
            got["StandardErrorFileDescriptor"]) == (5, 6, 7)
    assert "StandardOutput" not in got


def test_an_attached_run_cannot_be_a_unit_file() -> None:
    with pytest.raises(SdctrError) as e:
        unit_file(properties(web(), Host(1, 219), SDCTR, stdio=(0, 1, 2)))
    assert str(e.value) == "an attached run needs a systemd that takes descriptors (v236 or newer)"
    assert e.value.hint == "run it detached with -d"


def test_the_prestart_command_runs_as_given() -> None:
    got = {n: v for n, _, v in properties(web(), Host(1, 252), SDCTR, prestart=["/bin/mnt", "x"])}
    assert got["ExecStartPre"] == [("/bin/mnt", ["/bin/mnt", "x"], False)]


def test_pids_limit_edges() -> None:
    def tasks(limit: int) -> object:
        spec = web(resources=Resources(pids_limit=limit))
        return {n: v for n, _, v in properties(spec, Host(1, 252), SDCTR)}["TasksMax"]
    assert tasks(-1) == INFINITY
    assert tasks(1) == 1
    assert "TasksMax=infinity\n" in unit_file(properties(web(resources=Resources(pids_limit=-1)),
                                                          Host(1, 219), SDCTR))


def test_cpus_become_an_exact_quota() -> None:
    got = {n: v for n, _, v in properties(web(resources=Resources(cpus=2.0)), Host(2, 252), SDCTR)}
    assert got["CPUQuotaPerSecUSec"] == 2_000_000


def test_the_log_rate_limit_is_lifted_from_systemd_240_on() -> None:
    def names(version: int) -> set[str]:
        return {n for n, _, _ in properties(web(), Host(1, version), SDCTR)}
    assert "LogRateLimitIntervalUSec" in names(240)
    assert "LogRateLimitIntervalUSec" not in names(239)


def test_cpu_weight_just_above_the_floor() -> None:
    assert cpu_weight(3) == 2


def test_unit_file_quotes_what_systemd_would_split_or_unescape() -> None:
    text = unit_file(properties(web(remove=True), Host(1, 219), ['/opt/my dir/sd"ct\\r'],
                                prestart=["/bin/mnt", ""]))
    assert 'ExecStart="/opt/my dir/sd\\"ct\\\\r" init ' in text
    assert "ExecStartPre=/bin/mnt \"\"\n" in text
    unit = text.split("[Service]")[0]
    assert ("\nDescription=sdctr container web (nginx:latest)\nAfter=sdctr-setup.service\n"
            "CollectMode=inactive-or-failed\n") in unit


def test_sdctr_calls_back_through_its_own_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "sdctr"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "run", "x"])
    assert sdctr_argv(["--root", "/r"]) == [str(script), "--root", "/r"]
    script.chmod(0o644)  # not executable: the interpreter runs the package
    assert sdctr_argv(["--root", "/r"]) == [sys.executable, "-m", "sdctr", "--root", "/r"]
    other = tmp_path / "other"
    other.write_text("")
    other.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(other), str(script)])
    assert sdctr_argv([]) == [sys.executable, "-m", "sdctr"]
    monkeypatch.setattr(sys, "argv", [""])
    assert sdctr_argv([]) == [sys.executable, "-m", "sdctr"]


@pytest.mark.parametrize(("unified", "version"), [(True, 2), (False, 1)])
def test_cgroup_version_looks_at_the_unified_root(monkeypatch: pytest.MonkeyPatch, unified: bool,
                                                   version: int) -> None:
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: unified if p == "/sys/fs/cgroup/cgroup.controllers"
                        else real(p))
    assert props_mod.cgroup_version() == version
