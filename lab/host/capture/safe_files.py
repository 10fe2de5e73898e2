"""Writing into captures/ safely: no link followed, nothing replaced, names no one else uses.

captures/ is a folder anyone with a shell on the machine may have planted things
in (a link named like our next temporary file, a file named like our next
capture). So every file the lab writes there is created new with O_CREAT|O_EXCL
(which refuses an existing name, a link included) under a name no other capture
can take (mkstemp's random part), handed to the invoking user through its open
descriptor (fchown, never a path), and put under its final name with link(2),
which fails rather than replace what appeared there meanwhile.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from lab.paths import CAPTURES_DIR

PART_SUFFIX = ".pcap.part"      # a capture's raw file while the engine writes it: captures/.NAME.<random>.pcap.part
KERNEL_PART_SUFFIX = ".kernel.part"     # a kernel sampler's, while it samples


def new_private_file(folder: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """A new file in ``folder`` (O_CREAT|O_EXCL, mode 0600), open for writing: (descriptor, path)."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    return fd, Path(name)


def give_to_invoking_user(fd: int) -> None:
    """Under sudo, a file we write belongs to the user who ran sudo, not to root (through the fd)."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() == 0 and uid and gid:
        os.fchown(fd, int(uid), int(gid))
    os.fchmod(fd, 0o644)


def place(temporary: Path, final: Path) -> Path:
    """Give ``temporary`` its final name without replacing anything; the name it got.

    If ``final`` appeared while we worked (another capture, a file someone made),
    it is left alone and ours becomes final-2, final-3, ...
    """
    for number in range(1, 1000):
        target = final if number == 1 else final.with_name(f"{final.stem}-{number}{final.suffix}")
        try:
            os.link(temporary, target)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV) or os.path.lexists(target):
                raise
            os.rename(temporary, target)     # a filesystem without hard links: the next best thing
            return target
        os.unlink(temporary)
        return target
    raise OSError(errno.EEXIST, f"no free name beside {final}")


def remove_if_regular(path: Path) -> bool:
    """Remove ``path`` if it is a regular file (never through a link); True if it was removed."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_partial_capture(name: str) -> str | None:
    """Remove a capture's raw file by the name its container's label gives; the name, if removed.

    Only a plain name of the raw files' pattern in captures/, and only a regular
    file: a label is text that anyone who can run docker can write.
    """
    suffix = next((end for end in (PART_SUFFIX, KERNEL_PART_SUFFIX) if name.endswith(end)), None)
    if "/" in name or suffix is None or not (name.startswith(".") and len(name) > len(suffix) + 1):
        return None
    return name if remove_if_regular(CAPTURES_DIR / name) else None
