"""The machine's settings: /etc/sdctr/sdctr.yaml (``SDCTR_CONFIG`` names another file, so tests never
touch /etc). Three sections:

    registries:
      mirrors:                      # tried in order before the registry itself, for pulls only
        docker.io: ["https://mirror.example.com", "http://127.0.0.1:5001"]
      insecure: ["registry.lan:5000"]   # spoken to over plain HTTP (host or host:port)

    network:                        # the default network, `bridge` (sdctr.net)
      subnet: 10.89.0.0/16          # refused at the first start if a host route overlaps it
      gateway: 10.89.0.1            # default: the subnet's first address
      bridge: sdctr0
      firewall: auto                # the NAT and port rules: nftables, iptables (RHEL7), or auto:
                                    # nftables where nft is installed, else iptables

    storage:
      driver: auto                  # auto | devicemapper | overlay; auto: devicemapper where a
                                    # pool can be made or was, never in a container; else overlay
                                    # (sdctr.thinhost.chosen_driver)
      devicemapper:                 # the thin pool over two sparse loop files (Docker's defaults)
        data_size: 100G             # apparent sizes of <root>/devicemapper/pool/{data,metadata}
        metadata_size: 2G
        base_size: 10G              # every layer's and container's device
        filesystem: xfs             # xfs (where mkfs.xfs exists) or ext4; empty: pick
        min_free: 10                # percent of data and metadata below which new snapshots are refused
        thinpool: VG/LV             # an existing LVM thin pool instead of the loop files (Docker's
                                    # dm.thinpooldev): one sdctr alone uses (`sdctr storage setup
                                    # --lvm VG` makes it); data_size and metadata_size then unused

A missing file means the defaults (no mirrors; plain HTTP only for localhost and 127.0.0.0/8), and
YAML is imported only when the file exists: most commands never read it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdctr.log import SdctrError
from sdctr.record import Record

DEFAULT_PATH = Path("/etc/sdctr/sdctr.yaml")
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_MIRROR = re.compile(rf"(?:(https?)://)?({_HOST.pattern})/?")


class Mirror(Record):
    host: str  # host[:port]
    scheme: str | None  # None: https unless the host is insecure

    @property
    def text(self) -> str:
        return f"{self.scheme}://{self.host}" if self.scheme else self.host


class Registries(Record):
    mirrors: Mapping[str, tuple[Mirror, ...]] = {}
    insecure: tuple[str, ...] = ()

    def mirrors_of(self, domain: str) -> tuple[Mirror, ...]:
        return tuple(self.mirrors.get(domain, ()))


class NetworkSettings(Record):
    subnet: str = "10.89.0.0/16"
    gateway: str = ""  # "": the subnet's first address
    bridge: str = "sdctr0"
    firewall: str = "auto"  # FIREWALLS


GIB = 1 << 30
STORAGE_DRIVERS = ("auto", "devicemapper", "overlay")
FILESYSTEMS = ("", "xfs", "ext4")
_SIZE = re.compile(r"([0-9]+)\s*([kmgt]?)i?b?", re.IGNORECASE)
# lvm(8)'s VG and LV names: letters, digits and +_.-, not starting with '-' (its finer rules,
# reserved names and suffixes, are lvm's to apply)
_LVM_NAME = r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}"
THINPOOL = re.compile(rf"({_LVM_NAME})/({_LVM_NAME})")


class DeviceMapper(Record):
    data_size: int = 100 * GIB
    metadata_size: int = 2 * GIB
    base_size: int = 10 * GIB
    filesystem: str = ""  # "": xfs where mkfs.xfs exists, else ext4
    min_free: int = 10  # percent
    thinpool: str = ""  # "VG/LV": an LVM thin pool; "": the loop files


class Storage(Record):
    driver: str = "auto"
    devicemapper: DeviceMapper = DeviceMapper()


class Config(Record):
    registries: Registries = Registries()
    network: NetworkSettings = NetworkSettings()
    storage: Storage = Storage()


def config_path() -> Path:
    return Path(os.environ.get("SDCTR_CONFIG") or DEFAULT_PATH)


def load(path: Path | None = None) -> Config:
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config()
    except OSError as e:
        raise SdctrError(f"cannot read the configuration {path}: {e.strerror}") from None
    import yaml  # only when there is a file to read

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SdctrError(f"{path} is not valid YAML: {e}".splitlines()[0]) from None
    return parse(doc, source=str(path))


def parse(doc: Any, *, source: str) -> Config:
    """The checked configuration; every refusal names the file and the key."""
    doc = _mapping(doc if doc is not None else {}, source, "the top level")
    registries = _mapping(doc.get("registries") or {}, source, "registries")
    mirrors = _mapping(registries.get("mirrors") or {}, source, "registries.mirrors")
    return Config(Registries(
        mirrors={_host(domain, source, "registries.mirrors"): _mirrors(urls, source, domain)
                 for domain, urls in mirrors.items()},
        insecure=tuple(_host(h, source, "registries.insecure")
                       for h in _list(registries.get("insecure") or [], source, "registries.insecure")),
    ), _network(_mapping(doc.get("network") or {}, source, "network"), source),
                  _storage(doc.get("storage") or {}, source))


# --- network ------------------------------------------------------------------------------------

FIREWALLS = ("auto", "nftables", "iptables")
_BRIDGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")


def _network(section: Mapping[str, Any], source: str) -> NetworkSettings:
    unknown = sorted(str(k) for k in section if k not in NetworkSettings._fields)
    if unknown:
        raise SdctrError(f"{source}: network.{unknown[0]} is not a setting",
                         hint="the settings are: " + ", ".join(NetworkSettings._fields))
    # the subnet and gateway are checked where they are used (sdctr.net.network): the shared top
    # level imports no stage
    settings = NetworkSettings(**{k: str(v) for k, v in section.items()})
    if not _BRIDGE_NAME.fullmatch(settings.bridge):
        raise SdctrError(f"{source}: network.bridge {settings.bridge!r} is not an interface name",
                         hint="up to 15 letters, digits, '_', '.', '-'")
    if settings.firewall not in FIREWALLS:
        raise SdctrError(f"{source}: network.firewall {settings.firewall!r} is not a firewall back end",
                         hint="one of: " + ", ".join(FIREWALLS))
    return settings


def _storage(value: Any, source: str) -> Storage:
    storage = _mapping(value, source, "storage")
    driver = storage.get("driver") or "auto"
    if driver not in STORAGE_DRIVERS:
        raise SdctrError(f"{source}: storage.driver: {driver!r} is not a storage driver",
                         hint=f"one of: {', '.join(STORAGE_DRIVERS)}")
    dm = _mapping(storage.get("devicemapper") or {}, source, "storage.devicemapper")
    unknown = set(dm) - set(DeviceMapper._fields)
    if unknown:
        raise SdctrError(f"{source}: storage.devicemapper: unknown key {sorted(unknown)[0]!r}",
                         hint=f"known: {', '.join(DeviceMapper._fields)}")
    fs = dm.get("filesystem") or ""
    if fs not in FILESYSTEMS:
        raise SdctrError(f"{source}: storage.devicemapper.filesystem: {fs!r} is not xfs or ext4")
    sizes = {k: _size(dm[k], source, f"storage.devicemapper.{k}")
             for k in ("data_size", "metadata_size", "base_size") if k in dm}
    if "min_free" in dm:
        sizes["min_free"] = _percent(dm["min_free"], source, "storage.devicemapper.min_free")
    thinpool = str(dm.get("thinpool") or "")
    if thinpool and not THINPOOL.fullmatch(thinpool):
        raise SdctrError(f"{source}: storage.devicemapper.thinpool: {thinpool!r} is not an LVM thin pool's "
                         "name", hint="VG/LV, as lvs names it (e.g. vg0/sdctr-pool); "
                         "`sdctr storage setup --lvm VG` makes one")
    return Storage(driver=driver, devicemapper=DeviceMapper(filesystem=fs, thinpool=thinpool, **sizes))


def _percent(value: Any, source: str, key: str) -> int:
    text = str(value).strip().removesuffix("%").strip()
    if not text.isdigit() or int(text) > 99:
        raise SdctrError(f"{source}: {key}: {value!r} is not a percentage", hint="0 to 99, e.g. 10")
    return int(text)


def _size(value: Any, source: str, key: str) -> int:
    m = _SIZE.fullmatch(str(value).strip())
    if not m or int(m.group(1)) == 0:
        raise SdctrError(f"{source}: {key}: {value!r} is not a size", hint="examples: 512M, 100G, 2T")
    return int(m.group(1)) << (10 * " kmgt".index(m.group(2).lower() or " "))


def _mirrors(urls: Any, source: str, domain: str) -> tuple[Mirror, ...]:
    key = f"registries.mirrors.{domain}"
    result = []
    for url in _list(urls, source, key):
        m = _MIRROR.fullmatch(str(url))
        if not m:
            raise SdctrError(f"{source}: {key}: {url!r} is not a mirror address",
                             hint="http://host:port or https://host (no path)")
        result.append(Mirror(host=m.group(2), scheme=m.group(1)))
    return tuple(result)


def _mapping(value: Any, source: str, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SdctrError(f"{source}: {key} must be a mapping, not {type(value).__name__}")
    return value


def _list(value: Any, source: str, key: str) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise SdctrError(f"{source}: {key} must be a list, not {type(value).__name__}")
    return value


def _host(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str) or not _HOST.fullmatch(value):
        raise SdctrError(f"{source}: {key}: {value!r} is not a registry host", hint="host or host:port")
    return value


# --- writing it (sdctr storage setup) ----------------------------------------------------------

def set_storage(path: Path, driver: str, devicemapper: Mapping[str, Any]) -> str | None:
    """Sets storage.driver and keys of storage.devicemapper in the file, atomically, keeping the
    other settings; checked as load() checks it before anything is written. A file without a
    storage section (the shipped one: all comments) gets one appended, its text kept; otherwise
    the YAML is rewritten and, where the old text had comments, it is kept beside as .bak.
    Returns the backup's path, if one was made."""
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    except OSError as e:
        raise SdctrError(f"cannot read the configuration {path}: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise SdctrError(f"{path} is not valid YAML: {e}".splitlines()[0],
                         hint="fix it first: nothing was changed") from None
    doc = dict(_mapping(doc if doc is not None else {}, str(path), "the top level"))
    backup = None
    if "storage" not in doc:
        block = yaml.safe_dump({"storage": {"driver": driver, "devicemapper": dict(devicemapper)}},
                               default_flow_style=False, sort_keys=False)
        new = text + ("\n" if text and not text.endswith("\n") else "") + ("\n" if text else "") + block
    else:
        storage = dict(_mapping(doc["storage"] or {}, str(path), "storage"))
        storage["driver"] = driver
        storage["devicemapper"] = {**_mapping(storage.get("devicemapper") or {}, str(path),
                                              "storage.devicemapper"), **devicemapper}
        doc["storage"] = storage
        new = yaml.safe_dump(doc, default_flow_style=False, sort_keys=False)
        if "#" in text:
            backup = path.with_name(path.name + ".bak")
            _write_atomic(backup, text)
    parse(yaml.safe_load(new), source=str(path))  # what load() will say of it, before it is written
    _write_atomic(path, new)
    return str(backup) if backup else None


def _write_atomic(path: Path, text: str) -> None:
    """Durably (the machine's settings), readable by all as /etc's files are: sdctr.state's writer."""
    from sdctr.state import write_atomic

    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    write_atomic(path, text, mode=0o644)
