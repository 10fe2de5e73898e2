"""A lab room: JupyterHub for the students, and the broker, the one part that holds Docker.

    signatures   the room's signature on the captures its broker made (checked by invoke grade)
"""
