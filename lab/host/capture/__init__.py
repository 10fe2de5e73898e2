"""One capture of a lab, from the request to the annotated file on the learner's disk.

    request      what `invoke capture` was asked, and the capture container (pure)
    recorder     one capture: the engine's container, the exchange, the annotated pcapng
    kernel_view  the kernel's own view during a capture: samplers in the server's and the client's namespaces
    livewatch    the live view of a capture while it runs
    annotate     the story of each packet, as pcapng comments
    pcapng       the writer of the annotated file
    safe_files   writing in captures/ without following links or replacing anything
"""
