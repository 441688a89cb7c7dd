"""pytest plugin of luff (registered through the ``pytest11`` entry point)."""
