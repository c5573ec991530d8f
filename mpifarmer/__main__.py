"""``python -m mpifarmer``: the same as the ``mpifarmer`` command."""

import sys

from mpifarmer.cli import main

if __name__ == "__main__":
    sys.exit(main())
