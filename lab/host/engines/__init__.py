"""The Docker engines a lab runs on, and what the lab asks of each: the one layer that calls docker.

    docker       one engine's docker CLI: each command echoed, each failure one line
    echo         each command on one line of the terminal, and whole in logs/commands.log
    kinds        the kinds of engine (a bridge on one engine, an overlay across a swarm) as data
    placement    which engine runs each host of the lab: a swarm's nodes by their names
    lab_engines  the lab's engines by host: one Docker per engine, every engine in an explicit loop
    image_copy   the lab's image copied from this machine's engine to another
    encryption   whether an overlay between nodes is encrypted: wherever the nodes' kernels can, unless told
    kernel       what an engine's kernel offers the lab's namespaces, asked by a helper container
    product      which engine it is (Docker, rootless Docker, Podman) and what follows for a lab
"""
