"""Edits of the index JSON with jq programs (the real jq, through the ``jq`` package)."""

from __future__ import annotations

import contextlib
import itertools
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from luff.errors import UsageError


def apply_edits(
    doc: dict[str, Any], edits: Sequence[str], *, flag: str = "--set", what: str = "an index"
) -> dict[str, Any]:
    """Run each jq program on *doc* in turn; each must yield exactly one object.

    *flag* and *what* name the option and the document in errors.
    """
    if not edits:
        return doc
    import jq

    for n, program in enumerate(edits, 1):
        where = f"{flag} #{n} {program!r}"
        try:
            compiled = jq.compile(program)
        except ValueError as e:
            raise UsageError(f"invalid jq program {where}: {_jq_message(str(e))}") from None
        try:
            with _interruptible():
                # two results are enough to refuse; an endless generator must not be drained
                results = list(itertools.islice(iter(compiled.input_value(doc)), 2))
        except ValueError as e:
            raise UsageError(f"jq program {where} failed: {_jq_message(str(e))}") from None
        if len(results) != 1:
            many = "0 results" if not results else "more than one result"
            raise UsageError(f"jq program {where} gave {many}; it must give one")
        if not isinstance(results[0], dict):
            raise UsageError(
                f"jq program {where} gave {type(results[0]).__name__}, not {what} object"
            )
        doc = results[0]
    return doc


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Let Ctrl-C end the process while jq runs in C, where Python cannot raise
    KeyboardInterrupt until the program returns (which an endless one never does).
    Nothing has been written at that point. Only in the main thread, and only when
    Python's own SIGINT handler is installed."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _jq_message(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else text
    first = first.removeprefix("jq: error: ").replace(" at <top-level>", "")
    return first.rstrip(":")
