"""pytest plugin of luff (registered through the ``pytest11`` entry point).

Fixtures:

- ``luff_registry``: an embedded registry (no auth, in memory) shared by the
  whole test session; has ``.host`` (``"127.0.0.1:PORT"``) and ``.context()``.
- ``luff_registry_factory``: call it with :class:`luff.testing.Registry`'s
  keyword arguments (``auth="basic"``, ``auth="token"``, ``storage=...``) to
  get more registries; they are stopped at the end of the test.

Repository names are shared within a session: use a unique repository per
test (e.g. from ``request.node.name``) when using ``luff_registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from luff.testing.registry import Registry


@pytest.fixture(scope="session")
def luff_registry() -> Iterator[Registry]:
    """An embedded registry for the whole session (no auth, in memory)."""
    from luff.testing.registry import Registry

    with Registry() as reg:
        yield reg


@pytest.fixture
def luff_registry_factory() -> Iterator[Callable[..., Registry]]:
    """Start embedded registries with :class:`luff.testing.Registry`'s options."""
    from luff.testing.registry import Registry

    started: list[Registry] = []

    def make(**kw: Any) -> Registry:
        reg = Registry(**kw).start()
        started.append(reg)
        return reg

    yield make
    for reg in reversed(started):
        reg.stop()
