"""``python -m minillm train|sample ...``: the same as the ``minillm`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
