# A lab room's two images, built on the lab's (lab.host.room.image assembles the context: wheels/,
# requirements.txt, tcplab/). The project's files come last in both, so a change to the code
# rebuilds one layer, not the Python packages or Debian's.
#
#   --target student   a student's JupyterLab: JupyterLab, the notebooks, the lab's host side;
#                      no Docker client, and the spawner gives it no capabilities: its tasks go
#                      to the room's broker
#   --target hub       the room's hub and broker (two containers of this image): the same, plus
#                      the hub's proxy and the Docker client the broker's tasks call. These are the
#                      only containers of a room that get the Docker socket.
ARG LAB_IMAGE
FROM ${LAB_IMAGE} AS python
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY wheels /tmp/wheels
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/room \
 && /opt/room/bin/pip install -q --no-index --no-cache-dir --find-links /tmp/wheels -r /tmp/requirements.txt \
 && rm -rf /tmp/wheels /tmp/requirements.txt \
 && printf '#!/bin/sh\n# invoke, with the lab'"'"'s tasks wherever the student is\nexec /opt/room/bin/python -m invoke --search-root /opt/tcplab "$@"\n' \
        > /opt/room/bin/invoke \
 && chmod 755 /opt/room/bin/invoke \
 && printf '# a room'"'"'s Python (invoke, jupyter) first, in login shells too (JupyterLab'"'"'s terminal)\nexport PATH=/opt/room/bin:$PATH\n' \
        > /etc/profile.d/tcplab-room.sh \
 && useradd --uid 1000 --user-group --create-home --home-dir /home/student --shell /bin/bash student
ENV PATH=/opt/room/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/tcplab SHELL=/bin/bash

FROM python AS hub-tools
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        node-configurable-http-proxy docker.io \
 && rm -rf /var/lib/apt/lists/*

FROM hub-tools AS hub
COPY tcplab /opt/tcplab
RUN /opt/room/bin/python -m compileall -q /opt/tcplab/lab
LABEL org.tcplab.role=room-hub-image
ENV HOME=/srv/room
WORKDIR /srv/room

FROM python AS student
# JupyterLab asks each new user whether to fetch Jupyter's news from the internet; a room's
# JupyterLab has no way out, and its students nothing to decide: the question is not asked.
RUN mkdir -p /opt/room/share/jupyter/lab/settings \
 && printf '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}\n' \
        > /opt/room/share/jupyter/lab/settings/overrides.json
COPY tcplab /opt/tcplab
RUN /opt/room/bin/python -m compileall -q /opt/tcplab/lab
LABEL org.tcplab.role=room-image
ENV HOME=/home/student
USER student
WORKDIR /home/student
CMD ["python", "-m", "lab.host.room.singleuser"]
