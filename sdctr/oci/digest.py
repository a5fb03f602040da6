"""Digests: the one rule for a digest sdctr takes from anywhere (a manifest, an archive, a
registry's header): "sha256:" and 64 lowercase hex digits, nothing else, as the hex becomes a file
name in the store."""

from __future__ import annotations

import re

from sdctr.log import SdctrError

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def digest_hex(digest: str) -> str:
    m = _DIGEST.fullmatch(digest)
    if not m:
        raise SdctrError(f"{digest!r} is not a sha256 digest")
    return m.group(1)
