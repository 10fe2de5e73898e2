# The room's JupyterHub configuration: all of it is in lab/host/room/hub.py (read it there).
from lab.host.room.hub import configure

configure(c)  # noqa: F821 - traitlets gives a config file its `c`
