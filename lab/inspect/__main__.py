"""``python -m lab.inspect``: see lab.inspect.cli."""

import sys

from lab.inspect.cli import main

sys.exit(main())
