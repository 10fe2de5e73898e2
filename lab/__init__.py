"""netlab: a Docker lab for seeing how TCP really works.

The modules that run inside the lab's containers (protocol, server, client, capture)
use only the standard library and scapy, because the container image carries
Debian's python3 and python3-scapy and nothing from PyPI. The modules that run on
the learner's machine (orchestrate, inspect, the invoke tasks) may use the
dependencies declared in pyproject.toml.
"""

__version__ = "0.1.0"
