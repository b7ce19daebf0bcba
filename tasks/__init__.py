"""The tasks of tv100, one package per stage (discover, collect, clean, rank, train, report,
snapshots) plus the shared web layer.

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it: torch's OpenMP
threads otherwise spin while they wait for each other, and on a machine where another
CPU-bound process runs they spin against it. Measured on 2 cores with two busy processes
alongside, 10 steps of the sandbox CLIP took 88.6 s with spinning threads and 9.1 s with
passive ones (4.5 s and 4.7 s on an idle machine). OpenMP reads the variable when torch loads,
so it must be set before the first ``import torch``; every torch user in tv100 imports this
package first.

Importing it also makes every data-root hold take the root's Prefect global concurrency limit
when a Prefect server is configured (`tv100.tasks.rootlimit`).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tv100.tasks.rootlimit import install as _install_root_limit  # noqa: E402

_install_root_limit()
