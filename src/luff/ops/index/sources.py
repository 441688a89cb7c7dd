"""Index sources: an address with per-source overrides, and the exact parser of their syntax.

A source is a plain address, or docker's ``key=value,key=value`` form::

    ref=build.internal:5000/app:1,platform=linux/arm/v7,annotation.org.x=y
    oci:./out:1,os.version=10.0.17763.1234,os.features=win32k
    r/app:1,only=linux/amd64,only=linux/arm64

A value holding a comma is double-quoted CSV-style (``""`` is a quote), or is
JSON (``{…}``, ``[…]``); a whole ``"key=value"`` field may be quoted too.
Errors name the column where the text goes wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from luff.errors import InvalidPlatform, UsageError
from luff.model.digest import is_digest
from luff.model.platform import Platform
from luff.record import replace
from luff.stores.base import Store

ADDRESS_KEYS = ("ref", "src", "source")
KEYS = (*ADDRESS_KEYS, "only", "platform", "variant", "os.version", "os.features", "annotation.KEY")


class SourceSyntaxError(UsageError):
    """A source's text does not follow the syntax; ``column`` (1-based) is where it goes wrong."""

    def __init__(self, text: str, column: int, problem: str) -> None:
        where = f" at column {column}" if column else ""
        super().__init__(f"invalid source {text!r}{where}: {problem}")
        self.text = text
        self.column = column
        self.problem = problem

    def pointer(self) -> str:
        """Two lines: the text, and a caret under the column."""
        return f"{self.text}\n{' ' * max(0, self.column - 1)}^"


@dataclass(frozen=True)
class Source:
    """A source address with its per-source overrides.

    ``platform`` replaces the platform read from the image config;
    ``variant``, ``os_version`` and ``os_features`` replace single fields of it
    (of the override when given, else of the detected platform).
    ``annotations`` are added to the entry's descriptor. ``only`` keeps, from
    an index source, just the images of these platforms (and their
    attestations); an image source must be of one of them.
    """

    address: str
    platform: Platform | None = None
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    store: Store | None = field(default=None, compare=False, repr=False)
    identifier: str = ""
    only: tuple[Platform, ...] = ()

    @classmethod
    def from_store(cls, store: Store, identifier: str = "", **overrides: Any) -> Source:
        """A source in an already open store (e.g. a :class:`MemoryStore`), by tag or digest.

        *overrides* are the other fields (``platform``, ``annotations``, ...).
        """
        sep = "@" if is_digest(identifier) else ":"
        name = f"{store.name}{sep}{identifier}" if identifier else store.name
        return cls(name, store=store, identifier=identifier, **overrides)

    @classmethod
    def parse(cls, text: str) -> Source:
        """Parse a plain address or the ``key=value,…`` override form."""
        return _Parser(text).source()

    @classmethod
    def coerce(cls, value: str | Source) -> Source:
        """*value* itself, or parsed when it is a string."""
        return value if isinstance(value, Source) else cls.parse(value)

    @property
    def overrides_platform(self) -> bool:
        """True when any part of the platform is overridden."""
        return (
            self.platform is not None
            or self.variant is not None
            or self.os_version is not None
            or self.os_features is not None
        )

    def apply_platform(self, detected: Callable[[], Platform | None]) -> Platform | None:
        """The entry's platform: the override, else *detected*, with field overrides.

        Written as given: the override is validated, never normalised.
        """
        if not self.overrides_platform:
            return detected()
        base = self.platform or detected()
        if base is None:
            raise UsageError(
                f"source {self.address}: the platform is unknown; give it with platform=OS/ARCH"
            )
        p = base
        if self.variant is not None:
            p = replace(p, variant=self.variant)
        if self.os_version is not None:
            p = replace(p, os_version=self.os_version)
        if self.os_features is not None:
            p = replace(p, os_features=self.os_features)
        return p

    def __str__(self) -> str:
        return self.address


class _Parser:
    """Scans the ``key=value,…`` form, keeping the column of every field."""

    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, pos: int, problem: str) -> SourceSyntaxError:
        return SourceSyntaxError(self.text, pos + 1, problem)

    def fields(self) -> list[tuple[int, str]]:
        """``(start, text)`` of each comma-separated field, quotes and JSON respected."""
        text, out = self.text, []
        i, n = 0, len(self.text)
        while i <= n:
            start, buf = i, []
            depth = 0
            while i < n and not (text[i] == "," and depth == 0):
                c = text[i]
                if c == '"':
                    end = self._quote_end(i)
                    buf.append(text[i : end + 1])
                    i = end + 1
                    continue
                if c in "{[":
                    depth += 1
                elif c in "}]":
                    if depth == 0:
                        raise self.fail(i, f"unbalanced {c!r}")
                    depth -= 1
                buf.append(c)
                i += 1
            if depth:
                raise self.fail(start, "unbalanced brackets in this field")
            out.append((start, "".join(buf)))
            i += 1
        return out

    def _quote_end(self, i: int) -> int:
        text = self.text
        j = i + 1
        while j < len(text):
            if text[j] == '"':
                if j + 1 < len(text) and text[j + 1] == '"':
                    j += 2
                    continue
                return j
            j += 1
        raise self.fail(i, "unbalanced double quote")

    @staticmethod
    def unquote(value: str) -> str:
        v = value.strip()
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            return v[1:-1].replace('""', '"')
        return v

    def source(self) -> Source:
        text = self.text
        if not text.strip():
            raise UsageError("empty source")
        if "=" not in text:
            return Source(text.strip())
        values: dict[str, Any] = {"annotations": {}, "only": []}
        address = ""
        seen: dict[str, int] = {}
        for n, (pos, raw) in enumerate(self.fields()):
            lead = len(raw) - len(raw.lstrip())
            pos += lead
            item = self.unquote(raw)
            if not item:
                raise self.fail(pos, "empty field")
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq:
                if n == 0:
                    address, seen["ref"] = item, pos
                    continue
                raise self.fail(pos, f"{item!r} is not KEY=VALUE")
            value = self.unquote(value)
            canon = "ref" if key in ADDRESS_KEYS else key
            repeatable = canon in ("os.features", "only") or key.startswith("annotation.")
            if canon in seen and not repeatable:
                raise self.fail(pos, f"{key!r} given twice")
            seen[canon] = pos
            if canon == "ref":
                address = value
            elif key in ("platform", "only"):
                try:
                    p = Platform.parse(value)
                except InvalidPlatform as e:
                    raise self.fail(pos, f"{key}: {e.message}") from None
                if key == "platform":
                    values["platform"] = p
                else:
                    values["only"].append(p)
            elif key in ("variant", "os.version"):
                values[key.replace(".", "_")] = value
            elif key == "os.features":
                values.setdefault("os_features", []).extend(self.features(pos, value))
            elif key.startswith("annotation.") and len(key) > len("annotation."):
                values["annotations"][key[len("annotation.") :]] = value
            else:
                raise self.fail(pos, f"unknown key {key!r} (keys: {', '.join(KEYS)})")
        if not address:
            raise self.fail(0, "no address (give ref=ADDRESS)")
        if "os_features" in values:
            values["os_features"] = tuple(values["os_features"])
        values["only"] = tuple(values["only"])
        return Source(address, **values)

    def features(self, pos: int, value: str) -> list[str]:
        if value.startswith("["):
            try:
                lst = json.loads(value)
            except json.JSONDecodeError as e:
                raise self.fail(pos, f"os.features: {e.msg}") from None
            if not isinstance(lst, list) or not all(isinstance(x, str) for x in lst):
                raise self.fail(pos, "os.features must be a list of strings")
            return lst
        return [value] if value else []
