"""tcplab: a Docker lab for seeing how TCP really works.

The package's folders are its layers (read them in this order):

    inside/    what runs inside the lab's containers: the protocol (a sans-I/O codec),
               the server, the client, the capture engine, packet crafting. The standard
               library and scapy only, because the image carries Debian's python3 and
               python3-scapy and nothing else; the image copies this folder alone, and
               tests/test_structure.py fails when one of its modules imports anything more.
    host/      what runs on the learner's machine around the containers: the lab as data
               (topology: roles -> `docker run`), docker, the image, bring-up and tear-down,
               status, impairments, the capture recorder (pcapng, annotations, live view),
               and the task class the invoke tasks are made with (frontdoor).
    scenarios/ the bundled scenarios and what a scenario is: which packet the link does
               what to, drawn from a seed (host/ runs one; teach/ and course/ read it).
    inspect/   reading captures and explaining their TCP as Wireshark does; tcp.py is the
               one statement of the rules, inspect/fast/ a speed layer a reader may skip.
    teach/     what the notebooks use: the exercises and their checkers, notebook helpers,
               the answers a student's checks record.
    course/    teaching a class: each student's variant, submissions, whose a capture is,
               grading (on inspect/ and teach/; host/'s `class` brings up many labs).

Beside them: errors (the one error root, LabError), paths, terminal. ``server.py``
and ``client.py`` here only start lab.inside's, so that ``python -m lab.server``
and ``python -m lab.client`` work as the README teaches.

Data flows one way, and imports the other: a layer imports only those below it,
tasks > course > teach > host > scenarios > inspect > inside (tests/test_structure.py
checks it, deferred imports included). At run time: tasks.py -> host (the lab's description -> docker) -> the
containers (inside) -> captures/*.pcapng -> inspect -> the report, the notebooks
-> (a student's answers) -> course: submissions -> grades.
"""

__version__ = "0.1.0"
