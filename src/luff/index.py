"""Multi-platform indexes: build in memory, inspect, push; append, filter, list.

>>> import luff
>>> built = luff.index.build(["reg/app-amd64:1", "reg/app-arm64:1"])  # doctest: +SKIP
>>> [str(e.platform) for e in built.entries]  # doctest: +SKIP
['linux/amd64', 'linux/arm64']
>>> plan = built.plan("ghcr.io/acme/app:1")  # exists / mount / copy per blob  # doctest: +SKIP
>>> built.push("ghcr.io/acme/app:1")  # doctest: +SKIP
>>> desc = luff.index.create("ghcr.io/acme/app:1", ["reg/a:1", "reg/b:1"])  # doctest: +SKIP
"""

from __future__ import annotations

from luff.ops.index import (
    BuiltIndex,
    Destination,
    Entry,
    IndexOptions,
    Listing,
    Source,
    SourceSyntaxError,
    append,
    apply_edits,
    build,
    build_append,
    build_filter,
    config_platform,
    create,
    destinations,
    is_attestation,
    load_spec,
    parse_spec,
)
from luff.ops.index import filter as filter
from luff.ops.index import list_entries as list

__all__ = [
    "BuiltIndex",
    "Destination",
    "Entry",
    "IndexOptions",
    "Listing",
    "Source",
    "SourceSyntaxError",
    "append",
    "apply_edits",
    "build",
    "build_append",
    "build_filter",
    "config_platform",
    "create",
    "destinations",
    "filter",
    "is_attestation",
    "list",
    "list_entries",
    "load_spec",
    "parse_spec",
]

list_entries = list
