"""``python -m spine``."""

from spine.cli import main

main()
