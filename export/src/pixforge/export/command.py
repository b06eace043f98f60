"""`run(component)`: the Fire entry point shared by every pixforge command-line tool.

* `PixforgeError` -> `<prog>: error: <message>` on stderr, exit code 2, no traceback;
* `--verbose` anywhere on the command line shows the traceback instead;
* Ctrl-C -> one line, exit code 130 (training loops catch the signal themselves and checkpoint first).
"""

from __future__ import annotations

import inspect
import os
import sys
import traceback
from typing import Any

from pixforge.export.errors import PixforgeError


def run(component: Any, name: str | None = None, argv: list[str] | None = None) -> None:
    """Run `component` as a Fire CLI and exit the process with pixforge's error conventions."""
    import fire

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    prog = name or os.path.basename(sys.argv[0]) or "pixforge"
    try:
        if inspect.isclass(component):  # an instance makes `--help` list the verbs, not the constructor
            component = component()
        fire.Fire(component, command=args, name=prog)
    except PixforgeError as err:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
