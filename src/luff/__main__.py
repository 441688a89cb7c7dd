"""``python -m luff``."""

from luff.cli.main import main

main()
