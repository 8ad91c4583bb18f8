"""``python -m spine``."""

from spine.cli import main

# Guarded: extraction children are started with "spawn", which imports this module again
# under another name; they must not run the CLI.
if __name__ == "__main__":
    main()
