"""--network container:NAME: the container joins NAME's network namespace, as Docker's does, and
shares its hostname, /etc/hosts and /etc/resolv.conf (the same files, bind-mounted from NAME's
record directory). Nothing is set up for it: no veth, lease, rule or pin of its own.

    NAME on a bridge network   its init joins NAME's pinned namespace, <run>/netns/<NAME's id>
    NAME with --network host   the host's namespace, as NAME has it
    NAME joins another         that other's (one namespace for all, as Docker resolves it)
    NAME with --network none   refused: its namespace is not pinned, so nothing can join it

It runs while NAME runs: its unit has BindsTo= and After= on NAME's, so systemd stops it when
NAME stops, is killed or removed (its network would be gone: NAME's next start makes a new
namespace), and `systemctl restart` of NAME's unit restarts it too, into the new namespace. A
start while NAME is not running is refused (sdctr.runtime.lifecycle.start; the init says so too,
sdctr.init.standard.netns_to_join, for a `systemctl start` of the unit).

NAME restarted by its own --restart takes it along, as Upholds= would: its stop hook marks it
(sdctr.runtime.hooks.follow_target: <NAME's record>/followers/<id>), and NAME's next start
(its network hook, on a bridge network) starts the marked with it, by a helper unit ordered after
NAME's (start_followers). A transient unit is collected once it stops, so systemd alone cannot
start it again: `sdctr start` makes it anew.
"""

from __future__ import annotations

import os

from sdctr.log import SdctrError
from sdctr.spec import ContainerSpec, NetworkMode

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from sdctr.paths import Paths

FOLLOW_PREFIX = "sdctr-follow-"


def resolve(paths: Paths, spec: ContainerSpec) -> ContainerSpec:
    """At create: the container NAME (spec.network_name, as --network gave it) found and recorded
    by id, and its hostname taken. One clear line if it cannot be joined."""
    from sdctr.state import NoSuchContainer, find

    ref = spec.network_name
    try:
        other = find(paths, ref)
    except NoSuchContainer:
        raise SdctrError(f"--network container:{ref}: no such container",
                         hint="`sdctr ps -a` lists them") from None
    if other.network is NetworkMode.CONTAINER:
        other = target(paths, other)
    if other.network is NetworkMode.NONE:
        raise SdctrError(f"--network container:{ref}: container {other.name} has --network none, "
                         "a namespace that cannot be joined", hint="use --network none here too")
    return spec.replace(network_container=other.id, network_name="", hostname=other.hostname_or_id)


def target(paths: Paths, spec: ContainerSpec) -> ContainerSpec:
    """The container whose namespace `spec` joins."""
    from sdctr.state import NoSuchContainer, find_by_id

    try:
        return find_by_id(paths, spec.network_container)
    except NoSuchContainer:
        raise SdctrError(f"container {spec.network_container[:12]}, whose network container {spec.name} "
                         "joins, no longer exists",
                         hint=f"remove it (sdctr rm {spec.name}) and run it with another --network") from None


def start_followers(paths: Paths, spec: ContainerSpec) -> None:
    """At the start of `spec` (its network hook): the containers its last stop took down while it
    was to come back (marked by sdctr.runtime.hooks.follow_target), started with it."""
    marks = paths.followers(spec.id)
    try:
        cids = sorted(os.listdir(marks))
    except FileNotFoundError:
        return
    for cid in cids:
        (marks / cid).unlink(missing_ok=True)
    if cids:
        start_after(paths, spec.unit, cids)


def start_after(paths: Paths, unit: str, cids: list[str]) -> None:
    """`sdctr start CIDS` in a helper unit (sdctr-follow-*.service, collected once it ran) ordered
    after `unit`: it runs once that unit's job is done, and the caller (inside that job, or inside
    a stop of one of CIDS) does not wait for it."""
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import sdctr_argv

    argv = [*sdctr_argv([] if paths.is_default else ["--root", str(paths.root)]), "start", *cids]
    props = [("Description", "s", f"sdctr: start {' '.join(c[:12] for c in cids)} with {unit}"),
             ("Type", "s", "oneshot"), ("After", "as", [unit]),
             ("ExecStart", "a(sasb)", [(argv[0], argv, False)]),
             ("CollectMode", "s", "inactive-or-failed")]
    Systemd().enqueue_transient(f"{FOLLOW_PREFIX}{cids[0][:12]}-{os.getpid()}.service", props)
