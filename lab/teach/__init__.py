"""What the study notebooks use.

    exercises   exercises checked against the learner's own capture (notebooks 01-06)
    dynamics    exercises and predictions on TCP in time, with the kernel's samples (07, 08)
    overlay     exercises on the wire between two hosts: the lab's TCP inside VXLAN (09)
    notebook    what the notebooks share: which capture to read, whether a lab is up,
                crafting packets in it, drawing the TCP states
    captures_chosen  which capture each notebook studies, from `invoke notebook --pcap`
    answers     a student's answers, recorded as the notebooks check them, for `invoke submit`
    publish     `invoke publish`: every notebook run on its bundled captures, written as HTML
"""
