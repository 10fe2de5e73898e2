"""What runs on the learner's machine around the containers (the invoke tasks call into it).

    settings     one lab's configuration: name, subnet, port, image, limits (and the defaults)
    topology     the lab as data: its roles, and every `docker run` that follows from them, and on which host
    engines/     the Docker engines the lab runs on (its own map): the one layer that calls docker
    image        building the image, with or without a container registry
    state        what exists in Docker now, and what of it is the lab's
    isolation    no way from a container to the host: no default route, the gateway dropped
    live         what the notebooks' live cells do to a running lab (is it up, crafting, the client's shell)
    lifecycle    up (build, network, containers, offloads, a real request) and down, clean
    client_runs  one client container per send, bulk or chat
    status       the status table and the logs
    doctor       what this engine and its kernel can do, and what the lab will use for each
    impair       delay, jitter, loss, reordering and rate on a lab link (netem, or the NFQUEUE emulator)
    capture/     one capture, from the request to the annotated file (its own map)
    options      task options from strings to values, or one line saying what is wrong
    held_interrupts  Ctrl-C that waits while steps that must not be cut in half finish
    frontdoor    the task class: the lab's errors become one line and an exit code
    jupyter      invoke notebook; tour: invoke demo
    scenario     scenarios: what the link does to which packet, for everyone the same, and what must follow
    progress     long steps (an image build, a base bootstrapped) as one moving line, the log in a file
    classroom    invoke class up|status|down: many labs on one engine, one for each student
    room/        a lab room: JupyterHub for the students, a broker that alone holds Docker (its own map)
"""
