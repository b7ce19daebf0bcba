"""The sandbox web: a world of made-up series served on 127.0.0.1, and the demo build.

The sandbox imports the product, never the reverse. Importing `tv100.tasks` first sets the
OpenMP wait policy before any torch import (see `tv100.tasks`).
"""

import tv100.tasks  # noqa: F401
