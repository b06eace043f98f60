"""The run-directory convention every training verb follows.

    RUN/config.json      the options the run was started with (plus package versions)
    RUN/checkpoints/     step-000001000.pt ... (newest `keep_last` kept)
    RUN/samples/         step-000001000.png sample grids
    RUN/metrics.jsonl    one JSON object per logged step
    RUN/log.txt          human-readable log (what the console showed, minus progress bars)
    RUN/tensorboard/     event files, when tensorboard is installed
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pixforge.core.distributed import barrier, is_main
from pixforge.export.atomic import write_text
from pixforge.export.errors import PixforgeError
from pixforge.export.options import check_outside


class RunDir:
    """`inputs`: the paths the run reads (data, weights): a run directory that is one of them, lies inside one or
    holds one is refused before anything is written (`--overwrite` would delete the data). `fixed`: the config keys
    (method, architecture, data) a `--resume` may not change: its networks and checkpoints are built from them."""

    def __init__(self, path: str | Path, inputs: Iterable[str | Path | None] = (), fixed: Iterable[str] = ()):
        self.path = Path(path)
        self.inputs, self.fixed = tuple(inputs), tuple(fixed)
        self.config = self.path / "config.json"
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.metrics = self.path / "metrics.jsonl"
        self.log = self.path / "log.txt"
        self.tensorboard = self.path / "tensorboard"

    def sample_path(self, step: int, suffix: str = ".png") -> Path:
        return self.samples / f"step-{step:09d}{suffix}"

    def has_run(self) -> bool:
        return self.config.exists()

    def saved_config(self) -> dict[str, Any]:
        """The run's config.json; an unreadable one is a PixforgeError."""
        try:
            saved = json.loads(self.config.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise PixforgeError(f"{self.config} is not a readable JSON file") from None
        if not isinstance(saved, dict):
            raise PixforgeError(f"{self.config} does not hold a run's options (a JSON object)")
        return saved

    def check_tool(self, tool: str) -> None:
        """Refuse, before any work, a run whose config.json names another tool than `tool` (`recorded_tool`); a run
        that names none passes (not every tool records itself): the caller's own checks follow."""
        other = recorded_tool(self.saved_config()) if self.has_run() else None
        if other not in (None, tool):
            raise PixforgeError(f"{self.path} is a {other} run, not a {tool} run")

    def start(self, config: dict[str, Any], resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Create (or re-open with `resume`) the run; returns the config in force.

        A new run refuses an existing run directory unless `overwrite`, and a folder that is not empty but holds no
        run (no config.json) always: `overwrite` deletes runs only. With `resume` the options given now
        win (as in SPADE/TSIT's --continue_train: repeat the original options), and every option that
        differs from the saved config is logged as a warning. Under torchrun the main rank prepares the folder and the
        other ranks read the config it wrote.
        """
        if is_main():
            config = self._prepare(config, resume, overwrite)
        barrier()
        if not is_main():
            config = json.loads(self.config.read_text())
        setup_logging(self.log)
        return config

    def _prepare(self, config: dict[str, Any], resume: bool, overwrite: bool) -> dict[str, Any]:
        if self.path.exists() and not self.path.is_dir():
            raise PixforgeError(f"run directory {self.path} exists and is not a folder")
        check_outside(self.path, self.inputs, "run directory", holding=True)
        if resume:
            if not self.has_run():
                raise PixforgeError(f"--resume: {self.path} is not a run directory (no config.json)")
            saved = self.saved_config()
            if "tool" in config and (other := recorded_tool(saved)) != config["tool"]:
                what = f"a {other} run" if other else "a run of another tool"
                raise PixforgeError(f"--resume: {self.path} is {what}, not a {config['tool']} run")
            if moved := [k for k in self.fixed if k in config and saved.get(k) != config[k]]:
                was = ", ".join(f"{k} {saved.get(k)!r} (now {config[k]!r})" for k in moved)
                raise PixforgeError(f"--resume: {self.path} was started with {was}; these cannot change when a run "
                                    "resumes: repeat the run's options, or start a new run")
            changed = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
            if changed:
                logging.getLogger("pixforge").warning("resuming with changed options (saved -> now): %s", changed)
            config = {**saved, **config}
        elif self.path.exists() and any(self.path.iterdir()):
            if not self.has_run():
                raise PixforgeError(f"{self.path} is not empty and holds no run (no config.json): choose a new or "
                                    "empty folder")
            if not overwrite:
                raise PixforgeError(f"{self.path} already holds a run: pass --resume to continue it "
                                    "or --overwrite to start again")
            shutil.rmtree(self.path)
        for folder in (self.path, self.checkpoints, self.samples):
            folder.mkdir(parents=True, exist_ok=True)
        write_text(self.config, json.dumps(config, indent=2, sort_keys=True, default=str))
        return config


def recorded_tool(config: dict[str, Any]) -> str | None:
    """The tool a run's options name: their `tool` (as pixforge-dfvae records it), else their architecture record's
    (`arch.tool`, pixforge-tsit); None when they name none."""
    arch = config.get("arch")
    return config.get("tool") or (arch.get("tool") if isinstance(arch, dict) else None)


def setup_logging(log_file: Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """The `pixforge` logger: console on stderr and, on the main rank, `log_file`."""
    logger = logging.getLogger("pixforge")
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file is not None and is_main():
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger
