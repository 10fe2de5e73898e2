"""netlab's front door: `invoke --list` shows every task, `invoke --help TASK` its options.

Each task is a few lines; the work is done by functions in the lab package.
"""

from invoke import Collection, task

from lab import local


@task(help={"message": "a request line to send (repeatable; default: a small tour)"}, iterable=["message"])
def demo(c, message=None):
    """Run the lab's main job: a server and a client exchanging requests."""
    local.demo(c, message or None)


ns = Collection(demo)
