"""The bundled scenarios (NAME.toml) and what a scenario is.

    model    a scenario file's meaning, checked, its numbers drawn from the seed; which
             scenario and seed made a capture, from its name

Running one is lab.host.scenario's (`invoke scenario NAME`); lab.teach and lab.course
read the model to know what a student's seed did.
"""
