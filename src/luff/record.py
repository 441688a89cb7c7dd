"""Value classes without the start-up cost of :mod:`dataclasses`.

``@dataclass`` writes each class's methods as source text and compiles them
when its module is imported: about a millisecond of CPU for a frozen class
(3.8 million instructions), some 25 ms for the classes one ``luff copy``
loads, a fifth of a command that has nothing to transfer. A :class:`Record`
subclass lists its fields as annotations and writes its own ``__init__``
(compiled once, into the module's bytecode, like the rest of it); the other
methods come from here, made of the field names:

- ``__repr__`` as a dataclass's (``hide`` leaves fields out);
- ``__eq__`` over the fields, for instances of the same class;
- with ``frozen=True``: ``__hash__`` over the fields, and assignments
  refused (``__init__`` sets the fields with :func:`setfields`); otherwise
  instances are unhashable, as a dataclass's.

:func:`replace` copies a record (or a dataclass) with some fields changed.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar, TypeVar

_R = TypeVar("_R")


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen record."""


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def setfields(obj: object, **values: object) -> None:
    """Set the fields of a frozen record (in its ``__init__``)."""
    obj.__dict__.update(values)


class Record:
    """Base of luff's value classes (see the module's documentation)."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _shown: ClassVar[tuple[str, ...]] = ()
    _key: ClassVar[Any] = None

    def __init_subclass__(cls, frozen: bool = False, hide: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init_subclass__(**kw)
        own = [
            name
            # The class's own annotations (as the annotations HOWTO advises for 3.10+;
            # inspect.get_annotations would import inspect).
            for name, kind in cls.__dict__.get("__annotations__", {}).items()  # noqa: RUF063
            if not str(kind).startswith(("ClassVar", "typing.ClassVar"))
        ]
        fields = tuple(dict.fromkeys([*cls._fields, *own]))
        cls._fields = fields
        cls._shown = tuple(f for f in fields if f not in hide)
        key = attrgetter(*fields) if fields else (lambda self: ())
        cls._key = staticmethod(key)
        if frozen:
            cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign]
            cls.__delattr__ = _frozen_delattr  # type: ignore[method-assign]
            if "__hash__" not in cls.__dict__:
                cls.__hash__ = Record._hash  # type: ignore[method-assign, assignment]
        elif "__hash__" not in cls.__dict__ and "__eq__" not in cls.__dict__:
            cls.__hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._shown)
        return f"{type(self).__qualname__}({body})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        key = self._key
        return bool(key(self) == key(other))

    def _hash(self) -> int:
        return hash(self._key(self))


def replace(obj: _R, /, **changes: Any) -> _R:
    """A copy of the record (or dataclass) *obj* with *changes* to its fields."""
    if isinstance(obj, Record):
        values = {f: getattr(obj, f) for f in obj._fields}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
        values.update(changes)
        return type(obj)(**values)
    import dataclasses

    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
