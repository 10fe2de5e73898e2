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
import shlex
import stat
import tempfile
from pathlib import Path

from lab.errors import LabError
from lab.host.capture.owners import owner_mark
from lab.paths import shown

PART_SUFFIX = ".pcap.part"      # a capture's raw file while the engine writes it: captures/.NAME.<random>.pcap.part
KERNEL_PART_SUFFIX = ".kernel.part"     # a kernel sampler's, while it samples


def writable_folder(folder: Path) -> None:
    """``folder`` (captures/) made if missing and writable by us, or one line saying what to do:
    a file in its place, a link to nowhere, a read-only folder or filesystem."""
    where = shown(folder)
    if folder.is_symlink() and not folder.exists():
        raise LabError(f"{where} is a link to {os.readlink(folder)}, which does not exist: create that folder, "
                       "or remove the link (or set TCPLAB_CAPTURES to a folder)")
    if folder.exists() and not folder.is_dir():
        raise LabError(f"{where} is a file, not a folder: move it away, or set TCPLAB_CAPTURES to a folder")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create {where}: {exc.strerror}: create it yourself, or set TCPLAB_CAPTURES "
                       "to a folder you can write") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LabError(f"{where} is read-only for you: make it writable (chmod u+w {shlex.quote(where)}), or set "
                       "TCPLAB_CAPTURES to a folder you can write")


def new_private_file(folder: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """A new file in ``folder`` (O_CREAT|O_EXCL, mode 0600), open for writing: (descriptor, path).
    Its name carries this process's owner mark (lab.host.capture.owners): if the process is
    killed, the next capture or `down` finds the file is nobody's any more."""
    fd, name = tempfile.mkstemp(prefix=f"{prefix}{owner_mark()}.", suffix=suffix, dir=folder)
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
