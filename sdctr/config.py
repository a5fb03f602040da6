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
      driver: auto                  # auto | devicemapper | overlay; auto: devicemapper where the
                                    # kernel has dm-thin, overlay elsewhere
      devicemapper:                 # the thin pool over two sparse loop files (Docker's defaults)
        data_size: 100G             # apparent sizes of <root>/devicemapper/pool/{data,metadata}
        metadata_size: 2G
        base_size: 10G              # every layer's and container's device
        filesystem: xfs             # xfs (where mkfs.xfs exists) or ext4; empty: pick
        min_free: 10                # percent of data and metadata below which new snapshots are refused

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


class DeviceMapper(Record):
    data_size: int = 100 * GIB
    metadata_size: int = 2 * GIB
    base_size: int = 10 * GIB
    filesystem: str = ""  # "": xfs where mkfs.xfs exists, else ext4
    min_free: int = 10  # percent


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
    return Storage(driver=driver, devicemapper=DeviceMapper(filesystem=fs, **sizes))


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
