"""The tar layer's safety rules and the digest checks, sharpened where tests/mutation found
mutants that nothing noticed: exact refusals, the PATH_MAX/NAME_MAX edges, the entry types."""

from __future__ import annotations

import tarfile

import pytest

from sdctr.log import SdctrError
from sdctr.oci.digest import digest_hex, is_digest
from sdctr.oci.layers import MAX_NAME, MAX_PATH, Refused, check_member, compression, split_name


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, linkname
    return m


@pytest.mark.parametrize(("name", "reason"), [
    ("a\0b", "the name contains a NUL byte"),
    ("a/../../b", "the name goes up a directory ('..')"),
    ("x" * (MAX_PATH + 1), f"the name is longer than {MAX_PATH} bytes"),
    ("d/" + "x" * (MAX_NAME + 1), f"a name component is longer than {MAX_NAME} bytes"),
])
def test_split_name_refuses_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(Refused) as e:
        split_name(name)
    assert str(e.value) == reason


def test_split_name_takes_the_limits_themselves() -> None:
    longest = "/".join(["y" * 240] * 17)
    assert len(longest) == MAX_PATH
    assert split_name(longest) == longest.split("/")
    assert split_name("./a/./b/") == ["a", "b"]


@pytest.mark.parametrize("kind", [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE,
                                  tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_every_supported_type_passes(kind: bytes) -> None:
    assert check_member(member("dev/x", kind)) == ["dev", "x"]


@pytest.mark.parametrize(("m", "reason"), [
    (member("x", b"Z"), "unsupported entry type b'Z'"),
    (member("./"), "the entry would replace the layer root"),
    (member("d/.wh."), "not a valid whiteout: it must name one entry of its directory"),
    (member("d/.wh.."), "not a valid whiteout: it must name one entry of its directory"),
    (member("d/.wh..."), "not a valid whiteout: it must name one entry of its directory"),
    (member("d/.wh..wh.x"), "not a valid whiteout: it must name one entry of its directory"),
    (member("x", tarfile.LNKTYPE, "./"), "a hardlink to the layer root"),
])
def test_check_member_refuses_with_the_reason(m: tarfile.TarInfo, reason: str) -> None:
    with pytest.raises(Refused) as e:
        check_member(m)
    assert str(e.value) == reason


def test_the_root_directory_and_whiteouts_pass() -> None:
    assert check_member(member("./", tarfile.DIRTYPE)) == []
    assert check_member(member("d/.wh.x")) == ["d", ".wh.x"]
    assert check_member(member("d/.wh..wh..opq")) == ["d", ".wh..wh..opq"]


def test_an_unknown_compression_is_none() -> None:
    assert compression(b"plain tar") == ""


def test_digest_checks() -> None:
    good = "sha256:" + "a" * 64
    assert is_digest(good) and digest_hex(good) == "a" * 64
    assert not is_digest("sha256:xyz") and not is_digest(5) and not is_digest(good.upper())
    with pytest.raises(SdctrError) as e:
        digest_hex("sha256:xyz")
    assert str(e.value) == "'sha256:xyz' is not a sha256 digest"
