"""``python -m biornn``: the ``biornn`` command, for launchers that start modules (``torchrun -m biornn train ...``)."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
