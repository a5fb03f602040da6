"""What the user asked (RunOptions) and what the image says, resolved at create time into the
ContainerSpec that is recorded: the command from the entrypoint and Cmd, the environment in its
layers, the working directory and user, the capability set. Later steps read the record by id
and never resolve the image again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from sdctr.log import SdctrError
from sdctr.options import RunOptions, check_device_path
from sdctr.spec import DEFAULT_CAPS, ContainerSpec, Device, Port, merge_env

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any

    from sdctr.image.store import Image


def resolve(options: RunOptions, image: Image, *, user_env: Iterable[str] = ()) -> ContainerSpec:
    """The container `options` ask for, made from `image`. `user_env` is sdctr.options.user_env()
    as the caller read it (the env files, the caller's values for a bare -e KEY)."""
    from sdctr.runtime.lifecycle import new_id

    cfg = image.config
    entrypoint = cfg.entrypoint if options.entrypoint is None else options.entrypoint
    if options.command is not None:
        args = options.command
    else:  # as Docker: an --entrypoint drops the image's Cmd too
        args = cfg.cmd if options.entrypoint is None else ()
    command = (*entrypoint, *args)
    if not [c for c in command if c]:
        raise SdctrError(f"no command specified for {options.image}",
                         hint=f"give one: sdctr run {options.image} sh")
    # as Docker: --privileged is every capability, less --cap-drop's
    caps = capabilities(("ALL",) if options.privileged else options.cap_add, options.cap_drop)
    return ContainerSpec(
        id=new_id(), name=options.name, image=image.repo_tags[0] if image.repo_tags else options.image,
        image_id=image.id, command=command, env=merge_env(cfg.env, user_env),
        workdir=options.workdir or cfg.workdir or "/", user=options.user or cfg.user or "",
        hostname=options.hostname, mounts=(*options.volumes, *options.mounts, *options.tmpfs),
        read_only=options.read_only,
        capabilities=caps, devices=tuple(stat_device(d) for d in options.devices),
        privileged=options.privileged,
        resources=options.resources,
        restart=options.restart, restart_retries=options.restart_retries, labels=options.labels,
        network=options.network, network_name=options.network_name,
        ports=published(options, cfg.exposed_ports), ip=options.ip,
        add_hosts=options.add_hosts, dns=options.dns, dns_search=options.dns_search,
        dns_options=options.dns_options, mac_address=options.mac_address,
        network_aliases=options.network_aliases,
        interactive=options.interactive,
        tty=options.tty, attached=not options.detach, remove=options.rm, ephemeral=options.ephemeral,
        created=time.time(), sdnotify=options.sdnotify, **health_fields(options, cfg.healthcheck),
    )


def published(options: RunOptions, exposed: tuple[str, ...]) -> tuple[Port, ...]:
    """-p's ports, and with -P the image's exposed ones ("80/tcp") that -p does not publish, on a
    free host port each (host port 0: picked when the container is created)."""
    ports = options.publish
    if options.publish_all:
        given = {(p.container_port, p.proto) for p in ports}
        for text in exposed:
            number, _, proto = text.partition("/")
            proto = proto or "tcp"
            if number.isdigit() and proto in ("tcp", "udp") and (int(number), proto) not in given:
                given.add((int(number), proto))
                ports += (Port(0, int(number), proto),)
    return ports


def health_fields(options: RunOptions, image: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The health check's ContainerSpec fields, as Docker merges them: each option given, else
    the image's HEALTHCHECK (durations in nanoseconds there), else Docker's default (the spec's)."""
    image = image or {}
    test = list(image.get("Test") or ())
    from_image = ((tuple(test[1:]) if test[:1] == ["CMD"] else
                   ("/bin/sh", "-c", test[1]) if test[:1] == ["CMD-SHELL"] and len(test) == 2 else ())
                  if test else ())
    given = {"health_interval": options.health_interval or image.get("Interval", 0) / 1e9,
             "health_timeout": options.health_timeout or image.get("Timeout", 0) / 1e9,
             "health_start_period": options.health_start_period or image.get("StartPeriod", 0) / 1e9,
             "health_retries": options.health_retries or int(image.get("Retries", 0))}
    command = options.health_cmd if options.health_cmd is not None else from_image
    return {"health_cmd": command, "health_on_failure": options.health_on_failure,
            **{k: v for k, v in given.items() if v}}


def stat_device(device: Device) -> Device:
    """--device's node as the host has it now: its kind, numbers, mode and owner (Docker's
    DeviceFromPath). Anything but a character or block device is refused."""
    import os
    import stat

    try:
        st = os.stat(device.host_path)
    except OSError as e:
        raise SdctrError(f"--device {device.host_path}: {e.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise SdctrError(f"--device {device.host_path}: not a device node (a character or block device)")
    check_device_path("--device", device)
    return device.replace(kind="c" if stat.S_ISCHR(st.st_mode) else "b", major=os.major(st.st_rdev),
                          minor=os.minor(st.st_rdev), mode=stat.S_IMODE(st.st_mode), uid=st.st_uid,
                          gid=st.st_gid)


def capabilities(add: Iterable[str], drop: Iterable[str]) -> tuple[str, ...]:
    """Docker's default set with --cap-add's and without --cap-drop's (names as
    options.parse_capability leaves them: CAP_X, or ALL), in the kernel's order."""
    from sdctr.caps import ALL_CAPS

    add_set, drop_set = set(add), set(drop)
    # as moby's TweakCapabilities: --cap-drop ALL keeps just the added ones (the documented idiom
    # `--cap-drop ALL --cap-add X`); otherwise drops first, then adds
    if "ALL" in add_set:
        caps = set(ALL_CAPS) - drop_set
    elif "ALL" in drop_set:
        caps = add_set
    else:
        caps = (set(DEFAULT_CAPS) - drop_set) | add_set
    return tuple(c for c in ALL_CAPS if c in caps)
