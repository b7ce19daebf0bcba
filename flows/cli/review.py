"""`tv100 review`: the human review page of a build's kept classes, on 127.0.0.1.

The command prints the page's address (with its random token) and serves it
(`tv100.tasks.review.server.ReviewServer`) until the reviewer presses Done on the page, or
Ctrl-C. Every decision is appended to the `reviews` table the moment it is made.
"""

from __future__ import annotations

import errno
import threading
from typing import Annotated

import typer

from tv100.flows.cli.app import DataOpt, app, data_root, fail

PortOpt = Annotated[
    int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free port).")
]
ReviewerOpt = Annotated[
    str | None,
    typer.Option(help="Name recorded with each decision (default: your login name)."),
]


@app.command()
def review(data: DataOpt = None, port: PortOpt = 0, reviewer: ReviewerOpt = None) -> None:
    """Review the kept classes' images in a browser, with the keyboard: accept or reject.

    Serves a page on 127.0.0.1 only and prints its address, which carries a random token
    (every request needs it). Each class is a grid of its images, the most suspicious
    first, with its IMDb title and year and the automatic relevance decisions. Keys:
    arrows (or h j k l) move, a accepts, r rejects, A accepts the rest of the class,
    u undoes, n / p go to the next / previous class, ? shows them all. Every decision is
    appended to the `reviews` table as it is made; the next build honours them (a
    reject leaves the image out, an accept keeps it). Serves until Done (D) is pressed on
    the page, or Ctrl-C.
    """
    from tv100.tasks.prerequisites import require_tables
    from tv100.tasks.review.server import ReviewServer

    root = data_root(data)  # checked, never created: review reads a built root
    require_tables(root, "review", ("classes", "images"))  # one line naming `tv100 rank`
    done = threading.Event()
    try:
        server = ReviewServer(root, port=port, reviewer=reviewer, on_done=done.set).start()
    except ValueError as err:  # an empty --reviewer
        fail(f"--reviewer: {err}")
    except OSError as err:
        if err.errno in (errno.EADDRINUSE, errno.EACCES) and err.filename is None:
            fail(f"--port {port}: cannot serve on 127.0.0.1 ({err.strerror}); choose another "
                 "(0: any free port)")
        raise
    try:
        if not server.review.classes:
            fail(f"the `classes` table under {root.url!r} keeps no series; nothing to review")
        typer.echo(server.url)
        done.wait()
    finally:
        server.stop()
    reviewed, total = server.progress()
    typer.echo(f"review done: {reviewed} of {total} images reviewed")
