"""JSON from peers and files, parsed with a bound on nesting depth.

Python's ``json`` parser recurses once per level, so a few hundred
thousand ``[`` in a manifest, a layout's ``index.json``, an archive's
``manifest.json`` or a token response end in a ``RecursionError``. Every
JSON text that luff did not write itself is parsed with :func:`loads`, which
first measures the nesting depth of the text (strings skipped) and refuses
anything deeper than :data:`MAX_DEPTH` levels with :class:`LimitExceeded`.
Real manifests and indexes nest about five levels deep.
"""

from __future__ import annotations

import json
import re
from typing import Any

from luff.errors import LimitExceeded

#: The deepest nesting of arrays and objects accepted (documented in the README).
MAX_DEPTH = 64

# A JSON string (escapes included), to be skipped when counting brackets. The unrolled
# form keeps one attempt linear even in an unterminated string.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS_B = bytes(b for b in range(256) if b not in b"[]{}")


def depth(data: bytes | str) -> int:
    """The deepest nesting of ``[`` and ``{`` in *data*, outside strings.

    The count stops one past :data:`MAX_DEPTH`, so a deep text costs no more
    than a shallow one.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS_B)
    level = deepest = 0
    for c in brackets:
        if c in b"[{":
            level += 1
            if level > deepest:
                deepest = level
                if deepest > MAX_DEPTH:
                    break
        else:
            level -= 1
    return deepest


def loads(data: bytes | str, *, what: str = "JSON", where: str = "") -> Any:
    """``json.loads`` for untrusted text: *what* nested deeper than :data:`MAX_DEPTH`
    raises :class:`LimitExceeded` (``"<what> nested too deeply ..."``; *where* names
    the source). Other errors are ``json.loads``'s own (``ValueError``)."""
    if depth(data) > MAX_DEPTH:
        raise LimitExceeded(f"{what} nested too deeply (more than {MAX_DEPTH} levels)", where=where)
    return json.loads(data)
