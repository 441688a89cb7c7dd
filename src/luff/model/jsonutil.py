"""JSON from peers and files, parsed with a bound on nesting depth.

Python's ``json`` parser recurses once per level, so a few hundred
thousand ``[`` in a manifest, a layout's ``index.json``, an archive's
``manifest.json`` or a token response end in a ``RecursionError``. Every
JSON text that luff did not write itself is parsed with :func:`loads`, which
first measures the nesting depth of the text (strings skipped; see
:func:`too_deep`) and refuses anything deeper than :data:`MAX_DEPTH` levels
with :class:`LimitExceeded`. The embedded registry uses the same check.
Real manifests and indexes nest about five levels deep.
"""

from __future__ import annotations

import json
import re
from typing import Any

from luff.errors import LimitExceeded

#: The deepest nesting of arrays and objects accepted (documented in the README).
MAX_DEPTH = 64

_SPECIAL = re.compile(rb'[\[\]{}"]')
# The rest of a JSON string after its opening quote, escapes included: one match per
# string, linear even when the string never ends.
_STRING_TAIL = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def too_deep(data: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """True when *data* nests arrays and objects more than *limit* deep (outside strings).

    One pass, linear in the text whatever it holds. Text that is not JSON (a
    string that never ends) may answer either way: the parser refuses it.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    level = pos = 0
    search = _SPECIAL.search
    while (m := search(raw, pos)) is not None:
        c = raw[m.start()]
        pos = m.end()
        if c == 0x22:  # a string: skip to its closing quote
            s = _STRING_TAIL.match(raw, pos)
            if s is None:
                return False
            pos = s.end()
        elif c in (0x5B, 0x7B):
            level += 1
            if level > limit:
                return True
        else:
            level -= 1
    return False


def loads(data: bytes | str, *, what: str = "JSON", where: str = "") -> Any:
    """``json.loads`` for untrusted text: *what* nested deeper than :data:`MAX_DEPTH`
    raises :class:`LimitExceeded` (``"<what> nested too deeply ..."``; *where* names
    the source). Other errors are ``json.loads``'s own (``ValueError``)."""
    if too_deep(data):
        raise LimitExceeded(f"{what} nested too deeply (more than {MAX_DEPTH} levels)", where=where)
    return json.loads(data)
