"""One capture of a lab, from the request to the annotated file on the learner's disk.

    request      what `invoke capture` was asked, and the capture container (pure)
    recorder     one capture: the engine's container, the exchange, the annotated pcapng
    raw_sink     the engine's stream into the raw file, every write checked (a full disk is said)
    kernel_view  the kernel's own view during a capture: samplers in the server's and the client's namespaces
    livewatch    the live view of a capture while it runs
    annotate     the story of each packet, as pcapng comments
    pcapng       the writer of the annotated file
    safe_files   writing in captures/ without following links or replacing anything
    owners       which process a capture's container and working files belong to, and whether it runs
    leftovers    what a killed capture left in captures/: its raw file recovered, the rest removed
"""
