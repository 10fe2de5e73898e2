"""Teaching a class: a course, its students' variants, their submissions, the grading.

    variant.py    a course (its name and the key derived from the instructor's secret),
                  a student's variant (seed, token, bulk size) derived from the key and
                  the student's id with HMAC, the roster, the student set on this machine
    archive.py    a submission as a zip: written by `invoke submit`, read by the grader as
                  data from a stranger (limits on everything, nothing written but where told)
    identity.py   whether a capture is the student's: the token in its requests, its BULK
                  size, a scenario's delay and lost segment where that student's seed put them
    grading.py    re-analyse every capture, re-check every answer, write the CSVs and the
                  class report

The course layer sits on inspect/ and teach/ (it re-uses their analysis and checkers)
and on host/ only for the scenarios' definitions.
"""
