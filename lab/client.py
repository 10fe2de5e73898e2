"""``python -m lab.client``: the lab's client, as the README teaches it (lab/inside/client.py)."""

import sys

from lab.inside.client import main

if __name__ == "__main__":
    sys.exit(main())
