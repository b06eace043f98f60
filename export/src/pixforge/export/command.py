"""`run(component)`: the Fire entry point shared by every pixforge command-line tool.

Before Fire runs anything, the command line is checked against the verb's signature, so a mistake costs
nothing: an unknown verb or flag (with the near spelling suggested), a flag without its value or a stray
argument is one line on stderr and exit code 2. Switches (`bool` flags) never take the next word as their
value (`-q photo.png` is the switch and an input), and `--no-<switch>` turns one off. `--help`/`-h` print
pixforge's own help (verbs and flags spelt with dashes, as users type them).

* `PixforgeError` -> `<prog>: error: <message>` on stderr, exit code 2, no traceback;
* `--verbose` anywhere on the command line shows the traceback instead;
* Ctrl-C -> one line, exit code 130 (training loops catch the signal themselves and checkpoint first).
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import re
import sys
import traceback
from typing import Any

from pixforge.export.errors import PixforgeError

HELP = ("-h", "--help")


def run(component: Any, name: str | None = None, argv: list[str] | None = None) -> None:
    """Run `component` (a class whose public methods are the verbs) as a Fire CLI with pixforge's conventions."""
    import fire

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    prog = name or os.path.basename(sys.argv[0]) or "pixforge"
    try:
        if inspect.isclass(component):  # an instance makes the verbs bound methods
            component = component()
        args = check_command(component, args, prog)
        if args is None:
            return
        fire.Fire(component, command=args, name=prog)
    except PixforgeError as err:
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # output piped into a reader that stopped (`| head`): no traceback, no second error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


def invoke(component: Any, argv: list, name: str) -> int:
    """Run the CLI in this process as its console script would (tests read stdout/stderr): its exit code."""
    try:
        run(component, name=name, argv=[str(a) for a in argv])
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def verbs(component: Any) -> dict[str, Any]:
    """The component's verbs by their command-line names (dashes): its public methods."""
    return {n.replace("_", "-"): getattr(component, n) for n in dir(component)
            if not n.startswith("_") and callable(getattr(component, n))}


def check_command(component: Any, args: list[str], prog: str) -> list[str] | None:
    """Validate `args` against the verb's signature; the arguments for Fire, or None when help was printed."""
    table = verbs(component)
    if not args or args[0] in HELP:
        print(component_help(component, prog))
        return None
    name = args[0].replace("_", "-")
    if name not in table:
        raise PixforgeError(f"unknown command {args[0]!r}{_suggest(name, table)}; commands: {', '.join(sorted(table))}")
    if any(a in HELP for a in args[1:]):
        print(verb_help(table[name], f"{prog} {name}"))
        return None
    return [args[0], *check_flags(table[name], args[1:], name)]


def check_flags(fn: Any, args: list[str], verb: str) -> list[str]:
    """Check one verb's arguments; switches are rewritten to `--name=True/False` so Fire never reads on.

    A `bool | str` option (`--amp`, `--amp bf16`) takes the next argument as its value unless that is a flag or there
    is none, when it stands alone as True; `--no-NAME` is False. A flag that only `**options` takes carries its value
    with it (the next argument, unless that is a flag), as Fire reads it. Positional arguments fill the parameters not
    given as flags, in order (as Fire does), then `*args`.
    """
    params = inspect.signature(fn).parameters
    named = {n: p for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params.values())
    positional = [n for n, p in named.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    out, given, free, i = [], set(), [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":  # Fire's own flags follow; nothing of ours
            out.extend(args[i:])
            break
        if not _is_flag(arg):
            free.append(arg)
            out.append(arg)
            i += 1
            continue
        key, eq, value = arg.lstrip("-").partition("=")
        key = key.replace("-", "_")
        param, negated = _param_for(key, named)
        if param is None:
            if takes_any:
                step = 2 if not eq and i + 1 < len(args) and not _is_flag(args[i + 1]) else 1
                out.extend(args[i:i + step])
                i += step
                continue
            flags = [f"--{n.replace('_', '-')}" for n in named]
            raise PixforgeError(f"unknown option {arg.split('=')[0]} for {verb}"
                                f"{_suggest('--' + key.replace('_', '-'), flags)} (see {verb} --help)")
        given.add(param)
        if negated or _is_switch(named[param]):
            if eq and negated:
                raise PixforgeError(f"{arg.split('=')[0]} takes no value")
            out.append(f"--{param}={value}" if eq else f"--{param}={not negated}")
            i += 1
        elif eq:
            _check_number(named[param], value)
            out.append(f"--{param}={value}")
            i += 1
        elif i + 1 < len(args) and not _is_flag(args[i + 1]):
            _check_number(named[param], args[i + 1])
            out.extend([f"--{param}", args[i + 1]])
            i += 2
        elif _is_optional_switch(named[param]):
            out.append(f"--{param}=True")
            i += 1
        else:
            raise PixforgeError(f"--{param.replace('_', '-')} needs a value")
    room = [n for n in positional if n not in given]
    for name, value in zip(room, free, strict=False):  # free may run short (missing) or long (varargs)
        _check_number(named[name], value, name.upper())
    missing = [n for n in room[len(free):] if named[n].default is inspect.Parameter.empty]
    if missing:
        raise PixforgeError(f"{verb}: missing {' '.join(n.upper() for n in missing)} (see {verb} --help)")
    if not varargs and len(free) > len(room):
        raise PixforgeError(f"{verb}: unexpected argument {free[len(room)]!r} (see {verb} --help)")
    return out


def component_help(component: Any, prog: str) -> str:
    lines = [f"usage: {prog} COMMAND [ARGS] [--FLAG VALUE] ...", "", _doc(component), "", "commands:"]
    table = verbs(component)
    width = max(map(len, table), default=0)
    for name, fn in sorted(table.items()):
        lines.append(f"  {name:<{width}}  {_doc(fn).split('. ')[0].split(chr(10))[0]}")
    lines += ["", f"`{prog} COMMAND --help` shows a command's flags; --verbose shows tracebacks."]
    return "\n".join(lines)


def verb_help(fn: Any, prog: str) -> str:
    params = inspect.signature(fn).parameters
    usage, flags = [prog], []
    for name, p in params.items():
        dashed = name.replace("_", "-")
        if p.kind == p.VAR_POSITIONAL:
            usage.append(f"[{name.upper()}]...")
        elif p.kind == p.VAR_KEYWORD:
            usage.append("[--KEY VALUE]...")
        elif p.default is p.empty:
            usage.append(name.upper())
        elif _is_switch(p):
            flags.append((f"--{dashed}" + (f" / --no-{dashed}" if p.default is True else ""), p.default))
        elif _is_optional_switch(p):
            flags.append((f"--{dashed} [{name.upper()}]", p.default))
        else:
            flags.append((f"--{dashed} {name.upper()}", p.default))
    lines = ["usage: " + " ".join(usage) + (" [FLAGS]" if flags else ""), "", _doc(fn)]
    if flags:
        width = max(len(f) for f, _ in flags)
        lines += ["", "flags (default):"] + [f"  {f:<{width}}  ({d!r})" for f, d in flags]
    return "\n".join(lines)


def _doc(obj: Any) -> str:
    return inspect.cleandoc(inspect.getdoc(obj) or "")


def _param_for(key: str, named: dict[str, inspect.Parameter]) -> tuple[str | None, bool]:
    if key in named:
        return key, False
    for prefix in ("no_", "no"):
        rest = key[len(prefix):]
        if key.startswith(prefix) and rest in named and (_is_switch(named[rest]) or _is_optional_switch(named[rest])):
            return rest, True
    if len(key) == 1:  # Fire's shortcut: the one flag starting with that letter
        matches = [n for n in named if n[0] == key]
        if len(matches) == 1:
            return matches[0], False
        if matches:
            raise PixforgeError(f"-{key} is ambiguous: " + ", ".join(f"--{m.replace('_', '-')}" for m in matches))
    return None, False


def _check_number(p: inspect.Parameter, value: str, label: str | None = None) -> None:
    """A value for a parameter annotated `int` or `float` (or `... | None`) must read as one, finite: Fire would
    hand the verb the string 'abc' or 'nan', or inf for 1e999, and the verb would fail deep inside."""
    kind = _annotation(p).removesuffix("|None")
    if kind not in ("int", "float") or (_annotation(p).endswith("|None") and value == "None"):
        return
    label = label or f"--{p.name.replace('_', '-')}"
    if kind == "int" and not re.fullmatch(r"[+-]?\d+", value.strip()):
        raise PixforgeError(f"{label} must be a whole number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise PixforgeError(f"{label} must be a finite number, got {value!r}")


def _annotation(p: inspect.Parameter) -> str:
    """The parameter's annotation as written ("float|None"), whether postponed (a string) or evaluated."""
    if p.annotation is inspect.Parameter.empty:
        return ""
    annotation = p.annotation.__name__ if isinstance(p.annotation, type) else str(p.annotation)
    return annotation.replace(" ", "")


def _is_switch(p: inspect.Parameter) -> bool:
    annotation = _annotation(p)
    if annotation:
        return annotation in ("bool", "bool|None")
    return isinstance(p.default, bool)


def _is_optional_switch(p: inspect.Parameter) -> bool:
    """`bool | str`: a switch that may also take a value (`--amp`, `--amp bf16`)."""
    return _annotation(p) in ("bool|str", "str|bool")


def _is_flag(arg: str) -> bool:
    return arg.startswith("-") and arg != "-" and not re.fullmatch(r"-\d[\d.e+-]*", arg)


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
