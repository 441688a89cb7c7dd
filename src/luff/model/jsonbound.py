"""JSON from peers, with its nesting bounded.

``json.loads`` recurses once per ``[`` or ``{``: 100,000 of them raise
:class:`RecursionError`, which is no :class:`~luff.errors.LuffError`. No
manifest, index, ``index.json`` or config needs more than a few levels, so
:func:`loads` refuses text nested deeper than *max_depth* before parsing it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from luff.errors import LimitExceeded

#: Deepest nesting of arrays and objects :func:`loads` accepts by default.
MAX_DEPTH = 64

_SPECIAL = re.compile(rb'[\[\]{}"]')
_STRING_TAIL = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def depth_exceeds(data: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """True when the JSON text *data* nests arrays and objects deeper than *max_depth*.

    Brackets inside strings do not count. Text that is not JSON may answer
    either way; the parser refuses it afterwards.
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    depth = 0
    pos = 0
    search = _SPECIAL.search
    while (m := search(data, pos)) is not None:
        c = data[m.start()]
        pos = m.end()
        if c == 0x22:  # a string: skip to its closing quote
            s = _STRING_TAIL.match(data, pos)
            if s is None:
                return False  # unterminated: not JSON
            pos = s.end()
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads(data)``, refusing nesting deeper than *max_depth* with :class:`LimitExceeded`.

    Malformed text raises :class:`ValueError` (or :class:`UnicodeDecodeError`)
    as ``json.loads`` does.
    """
    raw = data.encode() if isinstance(data, str) else data
    if depth_exceeds(raw, max_depth):
        raise LimitExceeded(f"JSON nested too deeply (more than {max_depth} levels)")
    try:
        return json.loads(raw)
    except RecursionError:  # pragma: no cover - the check above keeps well below the limit
        raise LimitExceeded("JSON nested too deeply") from None
