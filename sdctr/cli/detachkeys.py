"""Docker's detach keys (^P^Q, --detach-keys), for `attach` and a foreground `run -it`: a module
of their own, so that both import them without importing each other."""

from __future__ import annotations

from sdctr.log import SdctrError

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_CTRL_SPECIAL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """Docker's form (moby/term ToBytes): a comma-separated list of single characters and
    `ctrl-X` (X a letter or one of @[\\]^_)."""
    out = bytearray()
    for key in text.split(","):
        k = key.strip()
        low = k.lower()
        if low.startswith("ctrl-") and len(k) == 6:
            c = low[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            if c in _CTRL_SPECIAL:
                out.append(_CTRL_SPECIAL[c])
                continue
        elif len(k) == 1:
            out.append(ord(k))
            continue
        raise SdctrError(f"--detach-keys {text!r}: {k!r} is not a key",
                         hint="a comma-separated list of characters and ctrl-<letter>, e.g. ctrl-p,ctrl-q")
    if not out:
        raise SdctrError(f"--detach-keys {text!r} names no key")
    return bytes(out)


class DetachScanner:
    """Finds the detach sequence in what the user types; what only looked like its start is
    passed on once it turns out not to be (as Docker's escape proxy does)."""

    def __init__(self, keys: bytes):
        self.keys = keys
        self.matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(the bytes to send on, whether the sequence is complete)."""
        out = bytearray()
        for b in data:
            if b == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    self.matched = 0
                    return bytes(out), True
                continue
            out += self.keys[:self.matched]
            self.matched = 0
            if b == self.keys[0]:
                self.matched = 1
            else:
                out.append(b)
        return bytes(out), False
