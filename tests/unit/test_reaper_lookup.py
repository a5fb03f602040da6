"""Which tiny init the container's PID 1 runs (sdctr.init.standard.find_reaper): the host's
static tini, else catatonit where RHEL/CentOS install it, else sdctr's own reaper (None). The
lookup order is REAPERS', tried here against files made under tmp_path at the same paths."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sdctr.init import standard

pytestmark = pytest.mark.unit

TINI = "/usr/bin/tini-static"
EL9_CATATONIT = "/usr/libexec/catatonit/catatonit"  # RHEL/CentOS 9's catatonit package
PODMAN_CATATONIT = "/usr/libexec/podman/catatonit"


def elf(path: Path, *, static: bool = True) -> None:
    """A 64-bit little-endian ELF header with one program header: PT_LOAD (static), or
    PT_INTERP (dynamic: it names its loader)."""
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<Q", header, 32, 64)  # e_phoff: right after the header
    struct.pack_into("<HH", header, 54, 56, 1)  # e_phentsize, e_phnum
    program = bytearray(56)
    struct.pack_into("<I", program, 0, 1 if static else 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(header + program))
    path.chmod(0o755)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """REAPERS, in their order, moved under tmp_path; SDCTR_INIT_REAPER unset."""
    monkeypatch.delenv(standard.REAPER_ENV, raising=False)
    monkeypatch.setattr(standard, "REAPERS", tuple(str(tmp_path / p.lstrip("/")) for p in standard.REAPERS))
    return tmp_path


def installed(host: Path, *paths: str, static: bool = True) -> None:
    for p in paths:
        elf(host / p.lstrip("/"), static=static)


def found(host: Path) -> str | None:
    path = standard.find_reaper()
    return None if path is None else "/" + str(Path(path).relative_to(host))


def test_tini_static_first_where_both_are_installed(host: Path) -> None:
    installed(host, TINI, EL9_CATATONIT, PODMAN_CATATONIT)
    assert found(host) == TINI


def test_catatonit_where_rhel_installs_it_when_tini_is_absent(host: Path) -> None:
    installed(host, EL9_CATATONIT, PODMAN_CATATONIT)
    assert found(host) == EL9_CATATONIT
    (host / EL9_CATATONIT.lstrip("/")).unlink()
    assert found(host) == PODMAN_CATATONIT  # EL8: podman-catatonit's path


def test_a_dynamic_or_non_executable_init_is_passed_over(host: Path) -> None:
    installed(host, TINI, static=False)  # it would look for its loader inside the container
    installed(host, EL9_CATATONIT)
    (host / EL9_CATATONIT.lstrip("/")).chmod(0o644)
    installed(host, PODMAN_CATATONIT)
    assert found(host) == PODMAN_CATATONIT


def test_none_installed_means_sdctrs_own_reaper(host: Path) -> None:
    assert standard.find_reaper() is None


def test_the_environment_forces_the_fallback_or_names_a_binary(host: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    installed(host, TINI)
    monkeypatch.setenv(standard.REAPER_ENV, "python")
    assert standard.find_reaper() is None
    other = host / "opt/init"
    elf(other)
    monkeypatch.setenv(standard.REAPER_ENV, str(other))
    assert standard.find_reaper() == str(other)
