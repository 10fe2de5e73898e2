"""The speed layer of lab.inspect: the same answers as tcp.py's rules, a batch of frames at a time.

A reader learning Wireshark's rules can skip this folder: lab/inspect/tcp.py states
them, frame by frame. ``columns`` reads a batch's TCP header fields with numpy;
``bulk`` takes in bulk the frames where it can show that no rule fires and hands
every other frame to tcp.py's Tracker with the state it would have had. The tests
(tests/test_inspect_bulk.py) hold both ways to the same flags, numbers and inner
state on every frame.
"""
