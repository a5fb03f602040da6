"""Method calls and property reads on the system bus through libsystemd's sd-bus, via ctypes.

The one binding sdctr.systemd uses (pystemd's import and per-object introspection were ~50 ms
of every `sdctr run`). Values are marshalled by their D-Bus signature, given by the caller:
strings as str, integers as int, booleans as bool, arrays as lists, structs as tuples, a
variant as a (signature, value) pair, a dict entry as a 2-tuple. libsystemd.so.0 ships with
every systemd (RHEL7's 219 included).
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import time

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any

DESTINATION = "org.freedesktop.systemd1"
CALL_TIMEOUT_USEC = 0  # sd-bus's default (25 s)
# systemd's own socket, as systemctl uses it when root: no bus daemon between us and PID 1
# (a third less time per call here, and one process less to wake on a busy host)
PRIVATE_SOCKET = "/run/systemd/private"

_lib = ctypes.CDLL("libsystemd.so.0", use_errno=True)
_ptr = ctypes.c_void_p
_str = ctypes.c_char_p
for _name, _args in {
    "sd_bus_open_system": [ctypes.POINTER(_ptr)],
    "sd_bus_new": [ctypes.POINTER(_ptr)],
    "sd_bus_set_address": [_ptr, _str],
    "sd_bus_start": [_ptr],
    "sd_bus_process": [_ptr, ctypes.POINTER(_ptr)],
    "sd_bus_wait": [_ptr, ctypes.c_uint64],
    "sd_bus_message_is_signal": [_ptr, _str, _str],
    "sd_bus_message_new_method_call": [_ptr, ctypes.POINTER(_ptr), _str, _str, _str, _str],
    "sd_bus_message_append_basic": [_ptr, ctypes.c_char, _ptr],
    "sd_bus_message_append_array": [_ptr, ctypes.c_char, _ptr, ctypes.c_size_t],
    "sd_bus_message_open_container": [_ptr, ctypes.c_char, _str],
    "sd_bus_message_close_container": [_ptr],
    "sd_bus_call": [_ptr, _ptr, ctypes.c_uint64, _ptr, ctypes.POINTER(_ptr)],
    "sd_bus_message_read_basic": [_ptr, ctypes.c_char, _ptr],
    "sd_bus_message_enter_container": [_ptr, ctypes.c_char, _str],
    "sd_bus_message_exit_container": [_ptr],
    "sd_bus_message_peek_type": [_ptr, ctypes.POINTER(ctypes.c_char), ctypes.POINTER(_str)],
    "sd_bus_message_at_end": [_ptr, ctypes.c_int],
}.items():
    getattr(_lib, _name).argtypes = _args
_lib.sd_bus_message_unref.argtypes = [_ptr]
_lib.sd_bus_message_unref.restype = _ptr
_lib.sd_bus_flush_close_unref.argtypes = [_ptr]
_lib.sd_bus_flush_close_unref.restype = _ptr
_lib.sd_bus_error_free.argtypes = [_ptr]
_lib.sd_bus_error_free.restype = None

# the C type that holds each basic D-Bus type; strings travel as char pointers
_BASIC = {"y": ctypes.c_uint8, "b": ctypes.c_int, "n": ctypes.c_int16, "q": ctypes.c_uint16,
          "i": ctypes.c_int32, "u": ctypes.c_uint32, "x": ctypes.c_int64, "t": ctypes.c_uint64,
          "d": ctypes.c_double, "h": ctypes.c_int}
_STRINGS = "sog"


class BusError(Exception):
    """A D-Bus error reply ("org.freedesktop.systemd1.NoSuchUnit: Unit x not loaded.") or a
    failed sd-bus call."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class _Error(ctypes.Structure):
    _fields_ = [("name", _str), ("message", _str), ("need_free", ctypes.c_int)]


def _check(r: int, what: str) -> int:
    if r < 0:
        raise BusError(f"System.Error.{errno.errorcode.get(-r, str(-r))}", f"{what}: {os.strerror(-r)}")
    return r


class Bus:
    """One connection to systemd, for every call a command makes: its own socket for root,
    else the system bus."""

    def __init__(self, direct: bool | None = None) -> None:
        """`direct`: systemd's own socket (True), the system bus (False), or the first when
        we may use it (None)."""
        self._bus = _ptr()
        if direct is None:
            direct = os.geteuid() == 0 and os.path.exists(PRIVATE_SOCKET)
        self.direct = direct and self._open_direct()
        if not self.direct:
            _check(_lib.sd_bus_open_system(ctypes.byref(self._bus)), "sd_bus_open_system")

    def _open_direct(self) -> bool:
        if _lib.sd_bus_new(ctypes.byref(self._bus)) < 0:
            return False
        if (_lib.sd_bus_set_address(self._bus, f"unix:path={PRIVATE_SOCKET}".encode()) >= 0
                and _lib.sd_bus_start(self._bus) >= 0):
            return True
        self.close()
        return False

    def close(self) -> None:
        if self._bus:
            _lib.sd_bus_flush_close_unref(self._bus)
            self._bus = _ptr()

    def call(self, path: str, interface: str, method: str, signature: str = "", *args: Any,
             destination: str = DESTINATION) -> list[Any]:
        """The reply's values, in order."""
        m = _ptr()
        _check(_lib.sd_bus_message_new_method_call(self._bus, ctypes.byref(m), destination.encode(),
                                                   path.encode(), interface.encode(), method.encode()),
               f"{method}: new message")
        try:
            types = split_signature(signature)
            if len(types) != len(args):
                raise TypeError(f"{method}({signature}) takes {len(types)} arguments, not {len(args)}")
            for sig, value in zip(types, args):
                _append(m, sig, value)
            return self._send(m, method)
        finally:
            _lib.sd_bus_message_unref(m)

    def get(self, path: str, interface: str, name: str) -> Any:
        """One property's value."""
        return self.call(path, "org.freedesktop.DBus.Properties", "Get", "ss", interface, name)[0]

    def watch(self, interface: str, member: str) -> None:
        """Let systemd's signal `member` reach next_signal(). On systemd's own socket it does
        unasked (for a job, to whoever started it); the bus daemon needs a match rule."""
        if not self.direct:
            rule = f"type='signal',sender='{DESTINATION}',interface='{interface}',member='{member}'"
            self.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", rule,
                      destination="org.freedesktop.DBus")

    def next_signal(self, interface: str, member: str, timeout: float) -> list[Any] | None:
        """The values of the next such signal, or None once `timeout` seconds passed. Signals
        that came while a call waited for its reply were queued, and come first."""
        deadline = time.monotonic() + timeout
        while True:
            m = _ptr()
            r = _lib.sd_bus_process(self._bus, ctypes.byref(m))
            _check(r, "sd_bus_process")
            if m:  # a message no handler took: ours to read
                try:
                    if _lib.sd_bus_message_is_signal(m, interface.encode(), member.encode()) > 0:
                        values = []
                        while _lib.sd_bus_message_at_end(m, 1) == 0:
                            values.append(_read(m))
                        return values
                finally:
                    _lib.sd_bus_message_unref(m)
            if r > 0:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r = _lib.sd_bus_wait(self._bus, int(left * 1_000_000))
            if r != -errno.EINTR:  # a signal of ours (Ctrl-C): its handler runs, we go on
                _check(r, "sd_bus_wait")

    def _send(self, m: ctypes.c_void_p, method: str) -> list[Any]:
        error = _Error()
        reply = _ptr()
        # A signal during the wait for the reply (an attached run's Ctrl-C, relayed by a Python
        # handler) would fail the call with EINTR after the request went out; held, it is
        # handled as soon as the reply is in.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            r = _lib.sd_bus_call(self._bus, m, CALL_TIMEOUT_USEC, ctypes.byref(error), ctypes.byref(reply))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        try:
            if r < 0:
                name = (error.name or b"").decode() or f"System.Error.{errno.errorcode.get(-r, str(-r))}"
                raise BusError(name, (error.message or b"").decode() or f"{method}: {os.strerror(-r)}")
            values = []
            while _lib.sd_bus_message_at_end(reply, 1) == 0:
                values.append(_read(reply))
            return values
        finally:
            _lib.sd_bus_error_free(ctypes.byref(error))
            if reply:
                _lib.sd_bus_message_unref(reply)


def object_path(prefix: str, name: str) -> str:
    """systemd's object path for a unit or job name (sd_bus_path_encode: bytes other than
    ASCII letters and digits become _xx)."""
    label = "".join(c if c.isascii() and c.isalnum() else f"_{b:02x}"
                    for c in name for b in c.encode()) if name else "_"
    return f"{prefix}/{label}"


def split_signature(signature: str) -> list[str]:
    """"sa(sv)as" -> ["s", "a(sv)", "as"]: the complete types, in order."""
    types = []
    i = 0
    while i < len(signature):
        end = _complete_type_end(signature, i)
        types.append(signature[i:end])
        i = end
    return types


def _complete_type_end(signature: str, i: int) -> int:
    c = signature[i]
    if c == "a":
        return _complete_type_end(signature, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        depth = 0
        for j in range(i, len(signature)):
            if signature[j] in "({":
                depth += 1
            elif signature[j] in ")}":
                depth -= 1
                if depth == 0:
                    if signature[j] != close:
                        break
                    return j + 1
        raise ValueError(f"unbalanced D-Bus signature {signature!r}")
    return i + 1


def _append(m: ctypes.c_void_p, sig: str, value: Any) -> None:
    kind = sig[0]
    if kind in _STRINGS:
        _check(_lib.sd_bus_message_append_basic(m, kind.encode(), _str(str(value).encode())), "append")
    elif kind in _BASIC:
        held: Any = _BASIC[kind](value)
        _check(_lib.sd_bus_message_append_basic(m, kind.encode(), ctypes.byref(held)), "append")
    elif sig == "ay":
        data = bytes(value)
        _check(_lib.sd_bus_message_append_array(m, b"y", data, len(data)), "append ay")
    elif kind == "a":
        _container(m, "a", sig[1:], [(sig[1:], v) for v in value])
    elif kind in "({":
        inner = split_signature(sig[1:-1])
        _container(m, "r" if kind == "(" else "e", sig[1:-1], list(zip(inner, value)))
    elif kind == "v":
        contents, inner_value = value
        _container(m, "v", contents, [(contents, inner_value)])
    else:
        raise ValueError(f"D-Bus type {sig!r} is not supported")


def _container(m: ctypes.c_void_p, kind: str, contents: str, items: list[tuple[str, Any]]) -> None:
    _check(_lib.sd_bus_message_open_container(m, kind.encode(), contents.encode()), f"open {kind}")
    for sig, value in items:
        _append(m, sig, value)
    _check(_lib.sd_bus_message_close_container(m), f"close {kind}")


def _read(m: ctypes.c_void_p) -> Any:
    """The next complete value: its type comes from the message itself."""
    kind_c = ctypes.c_char()
    contents = _str()
    _check(_lib.sd_bus_message_peek_type(m, ctypes.byref(kind_c), ctypes.byref(contents)), "peek")
    kind = kind_c.value.decode()
    if kind in _STRINGS:
        s = _str()
        _check(_lib.sd_bus_message_read_basic(m, kind.encode(), ctypes.byref(s)), "read")
        return (s.value or b"").decode()
    if kind in _BASIC:
        v: Any = _BASIC[kind]()
        _check(_lib.sd_bus_message_read_basic(m, kind.encode(), ctypes.byref(v)), "read")
        return bool(v.value) if kind == "b" else v.value
    inner = (contents.value or b"").decode()
    _check(_lib.sd_bus_message_enter_container(m, kind.encode(), inner.encode()), f"enter {kind}")
    items: list[Any] = []
    while _lib.sd_bus_message_at_end(m, 0) == 0:
        items.append(_read(m))
    _check(_lib.sd_bus_message_exit_container(m), f"exit {kind}")
    if kind == "a":
        return bytes(items) if inner == "y" else items
    if kind == "v":
        return items[0]
    return tuple(items)  # a struct or a dict entry
