"""The `tv100` command line: one subcommand per stage, each running the matching flow.

`app` (the typer app) and `main` (the console script) live in `app`; the commands in
`commands`; their output formatting in `render`. Installed packages add commands through
the ``tv100.cli`` entry point group (`tv100.flows.cli.app.add_plugins`).
"""

from tv100.flows.cli import commands as commands  # registers the commands on `app`
from tv100.flows.cli import experiment as experiment  # registers `tv100 experiment`
from tv100.flows.cli import exports as exports  # registers `tv100 export` on `app`
from tv100.flows.cli import review as review  # registers `tv100 review` on `app`
from tv100.flows.cli import server as server  # registers `tv100 server` on `app`
from tv100.flows.cli.app import INTERRUPTED, add_plugins, app, main

add_plugins(app)

__all__ = ["INTERRUPTED", "app", "main"]
