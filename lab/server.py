"""``python -m lab.server``: the lab's server, as the README teaches it (lab/inside/server.py)."""

import sys

from lab.inside.server import main

if __name__ == "__main__":
    sys.exit(main())
