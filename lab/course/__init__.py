"""Teaching a class: a course, its students' variants, their submissions, the grading.

    small_files.py  reading a roster, map or course file: bounded, one line when it cannot be
    students.py   one rule for student ids (any script, emails; case does not matter), the
                  short ASCII names files and labs get from them, rosters as LMSs export them
    variant.py    a course (its name and the key derived from the instructor's secret),
                  a student's variant (seed, token, bulk size) derived from the key and
                  the student's id with HMAC, the student set on this machine
    archive.py    a submission as a zip: written by `invoke submit`, read by the grader as
                  data from a stranger (limits on everything, nothing written but where told)
    submitting.py `invoke submit`: the recorded answers and their captures in one zip
    collected.py  whose each archive is and when it arrived, from where the course collected
                  it (an LMS's download, a folder per student, a map), never from the archive
    identity.py   whether a capture is the student's: the token in its requests, its BULK
                  size, a scenario's delay and lost segment where that student's seed put them
    copies.py     what only one run of the lab makes (ISNs, nanosecond times), to find
                  captures two students handed in
    kernel_agreement.py   whether a kernel file agrees with the capture it was made beside
    grading.py    re-analyse every capture, re-check every answer, archive by archive
    results.py    the class's results together: which archive counts, copies, points,
                  suspicions
    gradebook.py  what a grading writes: CSVs, the LMS exports, feedback, the report

The course layer sits on inspect/ and teach/ (it re-uses their analysis and checkers)
and on host/ only for the scenarios' definitions.
"""
