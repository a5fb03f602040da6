"""A bridge in firewalld's `trusted` zone, where firewalld runs, as libvirt and netavark put theirs:
otherwise its zones' default-deny rules (RHEL's `public` rejects what it does not know, forwarded
traffic included) drop what the containers send and what published ports DNAT to them. Over
D-Bus (org.fedoraproject.FirewallD1), with sdctr's sd-bus binding; where no firewalld owns that
name, nothing is done and nothing is imported beyond the binding.

The zone is runtime-only, as libvirt's: firewalld keeps it across `firewall-cmd --reload` (it
re-adds runtime interface bindings), not across a restart of firewalld (libvirtd listens for
that; sdctr has no daemon to): after one, `firewall-cmd --zone=trusted --change-interface=sdctr0`.
"""

from __future__ import annotations

from sdctr.systemd.bus import Bus, BusError

NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"
ZONE = "org.fedoraproject.FirewallD1.zone"
TRUSTED = "trusted"
DBUS = "org.freedesktop.DBus"


def _running(bus: Bus) -> bool:
    return bool(bus.call("/org/freedesktop/DBus", DBUS, "NameHasOwner", "s", NAME, destination=DBUS)[0])


def _bus() -> Bus | None:
    """The system bus (firewalld is not on systemd's own socket), or None where there is none."""
    try:
        return Bus(direct=False)
    except (BusError, OSError):
        return None


def trust(interface: str) -> bool:
    """The interface moved into the trusted zone (from whatever zone it was in); False where
    firewalld does not run. A refusal raises BusError."""
    return _zone_call("changeZoneOfInterface", TRUSTED, interface, {"ZONE_ALREADY_SET": True})


def untrust(interface: str) -> bool:
    """The interface out of its zone (libvirt's removeInterface with zone ""), before the bridge
    goes; False where firewalld does not run or did not have it."""
    return _zone_call("removeInterface", "", interface, {"UNKNOWN_INTERFACE": False, "NOT_ENABLED": False})


def _zone_call(method: str, zone: str, interface: str, answers: dict[str, bool]) -> bool:
    """firewalld's zone `method` for the interface: True if done, False where firewalld does not
    run; an error whose code is in `answers` is that answer, any other raises BusError."""
    bus = _bus()
    if bus is None:
        return False
    try:
        if not _running(bus):
            return False
        try:
            bus.call(PATH, ZONE, method, "ss", zone, interface, destination=NAME)
        except BusError as e:
            answer = next((a for code, a in answers.items() if code in e.message), None)
            if answer is None:
                raise
            return answer
        return True
    finally:
        bus.close()


def zone_of(interface: str) -> str:
    """The zone firewalld has the interface in ("": none, or no firewalld)."""
    bus = _bus()
    if bus is None:
        return ""
    try:
        if not _running(bus):
            return ""
        return str(bus.call(PATH, ZONE, "getZoneOfInterface", "s", interface, destination=NAME)[0])
    finally:
        bus.close()
