"""A lab room: students log in to JupyterHub with a browser, each gets JupyterLab and a lab of their
own, and only the room's broker (and the hub, to start JupyterLabs) holds Docker.

    plan         the room as data: names, labels, ports, limits, passwords
    lifecycle    invoke room up|status|down
    image        the room's images (the students' and the hub's), on the lab's
    hub          the hub's configuration: the roster's logins, each JupyterLab's container (in the hub only)
    singleuser   a student's JupyterLab as it starts: the workspace, then jupyterhub-singleuser
    tokens       who a request to the broker comes from (a per-student token)
    requests     what the broker accepts from a student, and the bounds on it, as data
    broker       the broker: a student's tasks and notebook asks, run on their own lab only
    client       the student's side: tasks and live cells sent to the broker
    signatures   the room's signature on the captures its broker made (checked by invoke grade)
"""
