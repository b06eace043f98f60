"""`pixforge`: the umbrella command over every installed pixforge tool.

    pixforge list                      installed tools, versions and what they do
    pixforge demo [--out DIR] [--only NAME,...]
                                       every tool's short demo on embedded data, core's first
    pixforge <tool> <verb> ...         the same as pixforge-<tool> <verb> ...

Tools are found through the entry-point group `pixforge.tools` (name -> Fire component class).
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from pixforge.export.command import run
from pixforge.export.errors import PixforgeError

GROUP = "pixforge.tools"
USAGE = __doc__.split("\n\n")[1]


def tools() -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    return dict(sorted(found.items(), key=lambda item: (item[0] != "core", item[0])))


def _summary(ep: EntryPoint) -> tuple[str, str]:
    version = ep.dist.version if ep.dist else "?"
    try:
        doc = (ep.load().__doc__ or "").strip().splitlines()
    except Exception as err:  # a broken install should not hide the other tools
        return version, f"(cannot be loaded: {err.__class__.__name__}: {err})"
    return version, doc[0] if doc else ""


class Umbrella:
    """pixforge: image- and video-generation tools sharing one core."""

    def list(self) -> str:
        """The installed pixforge tools, their versions and what they do."""
        rows = [(name, *_summary(ep)) for name, ep in tools().items()]
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{name:<{width}}  {version:<8}  {doc}" for name, version, doc in rows)

    def demo(self, out: str = "demo-out", only: str | tuple | None = None) -> str:
        """Run every installed tool's short demo on embedded data; outputs go to OUT/<tool>/."""
        if Path(out).exists() and not Path(out).is_dir():
            raise PixforgeError(f"--out {out} exists and is not a folder")
        wanted = _names(only)
        available = tools()
        unknown = sorted(set(wanted or ()) - set(available))
        if unknown:
            raise PixforgeError(f"--only names unknown tool(s) {', '.join(unknown)}; installed: "
                                f"{', '.join(available)}")
        done = []
        for name, ep in available.items():
            if wanted and name not in wanted:
                continue
            component = ep.load()
            if not hasattr(component, "demo"):
                continue
            target = Path(out) / name
            print(f"== pixforge {name} demo -> {target}", flush=True)
            start = time.time()
            report = component().demo(out=str(target))
            if report:
                print(report, flush=True)
            done.append(f"{name:<12} {time.time() - start:6.1f} s  {target.resolve()}")
        return "demo outputs:\n" + "\n".join(done)


def _names(only) -> list[str] | None:
    if only is None or only == "":
        return None
    if isinstance(only, (tuple, list)):
        return [str(x) for x in only]
    return [x.strip() for x in str(only).split(",") if x.strip()]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    available = tools()
    if args and args[0] in available and args[0] not in ("list", "demo"):
        name = args[0]
        run(available[name].load(), name=f"pixforge {name}", argv=args[1:])
        return
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE + "\ninstalled tools: " + ", ".join(available))
        return
    if args[0] not in ("list", "demo") and not args[0].startswith("-"):
        print(f"pixforge: error: unknown tool or command {args[0]!r}; installed tools: "
              f"{', '.join(available)}", file=sys.stderr)
        sys.exit(2)
    run(Umbrella, name="pixforge", argv=args)


if __name__ == "__main__":
    main()
