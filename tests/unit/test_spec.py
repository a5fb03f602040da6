"""The recorded container: its restart policy's behaviour, its environment layers, its JSON."""

from __future__ import annotations

from sdctr import spec
from sdctr.spec import ContainerSpec, Mount, Resources, RestartPolicy


def test_restart_policies_and_their_behaviour() -> None:
    assert RestartPolicy.ON_FAILURE.restarts_on(1) and not RestartPolicy.ON_FAILURE.restarts_on(0)
    assert RestartPolicy.ALWAYS.restarts_on(0)
    assert not RestartPolicy.NO.restarts_on(1)
    assert RestartPolicy.UNLESS_STOPPED.systemd_restart() == "always"


def test_env_merge_order() -> None:
    merged = spec.merge_env(["PATH=/bin", "A=image"], ["A=user", "B=2"])
    assert merged == ("PATH=/bin", "A=user", "B=2")


def test_spec_round_trips_through_json() -> None:
    s = ContainerSpec(id="a" * 64, name="web", image="busybox:latest", image_id="b" * 64,
                      command=("sh", "-c", "echo hi"), env=("A=1",), mounts=(Mount("/s", "/d", True),),
                      resources=Resources(cpu_shares=512, memory=64 << 20), restart=RestartPolicy.ALWAYS)
    assert ContainerSpec.from_json(s.to_json()) == s
    assert s.unit == "ctr-aaaaaaaaaaaa.service"
