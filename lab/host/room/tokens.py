"""Who a request to the broker comes from: a per-student token the spawner puts in the student's
JupyterLab, ``STUDENT:MAC`` with the MAC an HMAC of the id under the room's key.

The broker needs no table of tokens: it checks the MAC and takes the student from the token it
holds, never from anything else in the request. A student can read their own token (it is in
their environment) and no one else's; without the room's key no token can be made.
"""

from __future__ import annotations

import hashlib
import hmac


def token_for(room_key: bytes, student: str) -> str:
    mac = hmac.new(room_key, b"tcplab room broker\0" + student.encode(), hashlib.sha256).hexdigest()
    return f"{student}:{mac}"


def student_of(room_key: bytes, token: object) -> str | None:
    """The student a token was made for, or None if the room did not make it."""
    if not isinstance(token, str) or ":" not in token or len(token) > 300:
        return None
    student = token.rsplit(":", 1)[0]
    return student if hmac.compare_digest(token_for(room_key, student), token) else None
