"""Frozen records: what `dataclasses.dataclass(frozen=True)` gave us, without its import.

`import dataclasses` loads inspect, and with it ast, dis and tokenize: 8-15 ms of every start of
the init and the CLI (measured with -X importtime), for classes that need no more than fields
with defaults, equality, a repr and replace().

    class Mount(Record):
        source: str
        target: str
        readonly: bool = False

Fields are the annotated class attributes in order, a base class's first; a class attribute is
the field's default (a dict or list default is copied for each record, and left out of the
hash). Records are immutable.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from typing_extensions import Self, dataclass_transform
else:
    def dataclass_transform(**_: object) -> object:
        return lambda cls: cls


@dataclass_transform(frozen_default=True)
class Record:
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _field_set: ClassVar[frozenset[str]] = frozenset()
    _mutable_defaults: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # this class's own annotations (inspect.get_annotations is 3.10+, and inspect is the cost)
        own = [n for n in cls.__dict__.get("__annotations__", {}) if not n.startswith("_")]  # noqa: RUF063
        cls._fields = (*cls._fields, *(n for n in own if n not in cls._fields))
        cls._defaults = {n: cls.__dict__[n] for n in own if n in cls.__dict__} | {
            n: v for n, v in cls._defaults.items() if n not in own}
        cls._field_set = frozenset(cls._fields)
        cls._mutable_defaults = tuple(n for n, v in cls._defaults.items() if isinstance(v, (dict, list)))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # one dict update instead of an object.__setattr__ per field: the generator builds ~300
        # records of ~35 fields for 100 declared containers, at every boot
        fields = self._fields
        if args:
            if len(args) > len(fields):
                raise TypeError(f"{type(self).__name__}() takes {len(fields)} fields, {len(args)} were given")
            positional = dict(zip(fields, args))
            if not positional.keys().isdisjoint(kwargs):
                raise TypeError(f"{type(self).__name__}() got a repeated field "
                                f"{next(k for k in kwargs if k in positional)!r}")
            kwargs = {**positional, **kwargs}
        values = {**self._defaults, **kwargs}
        if len(values) != len(fields) or not self._field_set.issuperset(kwargs):
            name = type(self).__name__
            for key in kwargs:
                if key not in self._field_set:
                    raise TypeError(f"{name}() got an unexpected field {key!r}")
            raise TypeError(f"{name}() is missing field {next(f for f in fields if f not in values)!r}")
        for field in self._mutable_defaults:  # a dict or list default is copied for each record
            if field not in kwargs:
                values[field] = values[field].copy()
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:  # a dict or list field takes no part, as with field(hash=False)
        return hash(tuple(v for v in self._values() if not isinstance(v, (dict, list))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"

    def replace(self, **changes: Any) -> Self:
        return type(self)(**{**{f: getattr(self, f) for f in self._fields}, **changes})

    def as_dict(self) -> dict[str, Any]:
        """Fields as plain data: records within (and within tuples and lists) as dicts too."""
        return {f: _plain(getattr(self, f)) for f in self._fields}


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    return value
