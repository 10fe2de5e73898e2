"""What runs on the learner's machine around the containers (the invoke tasks call into it).

    settings     one lab's configuration: name, subnet, port, image, limits (and the defaults)
    topology     the lab as data: its roles, and every `docker run` that follows from them
    docker       the one place docker commands run: echoed, errors as one line
    image        building the image, with or without a container registry
    state        what exists in Docker now, and what of it is the lab's
    lifecycle    up (build, network, containers, offloads, a real request) and down, clean
    client_runs  one client container per send, bulk or chat
    status       the status table and the logs
    impair       delay, jitter, loss, reordering and rate on a lab link (netem, or the NFQUEUE emulator)
    capture_request  what `invoke capture` was asked, and the capture container (pure)
    recorder     one capture: the engine's container, the exchange, the annotated pcapng
    safe_files   writing in captures/ without following links or replacing anything
    livewatch    the live view of a capture; annotate, pcapng: the story comments, the writer
    options      task options from strings to values, or one line saying what is wrong
    frontdoor    the task class: the lab's errors become one line and an exit code
    jupyter      invoke notebook; tour: invoke demo
    scenario     scenarios: what the link does to which packet, for everyone the same, and what must follow
    kernel_view  the kernel's own view during a capture: samplers in the server's and the client's namespaces
    progress     long steps (an image build, a base bootstrapped) as one moving line, the log in a file
    classroom    invoke class up|status|down: many labs on one engine, one for each student
    swarm        a lab over two engines of one swarm: the server's node and the client's
    placement    which of a swarm lab's engines runs the server, which the client, where its overlay is made
    encryption   whether a swarm lab's overlay is encrypted: wherever the nodes' kernels can, unless told
    engine_kernel  what the engine's kernel offers the lab's namespaces, asked by a helper container
"""
