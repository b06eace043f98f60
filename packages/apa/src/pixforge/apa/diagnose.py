"""`diagnose`: what a user looks at to see D's overfitting held off, read from a run's logs.

Over kimg: p (the augmentation / pseudo-augmentation probability), lambda_r = E[sign(D(real))] (the overfitting
heuristic: 1 when D is certain of every real, the target 0.6 is what APA holds it near), D's mean logits on reals
and fakes (they drift apart as D overfits), and the quality metrics (SWD always, FID/KID when computed). Writes
`diagnose.png` (extra `plots`: matplotlib) and `diagnose.json` (the same series) under OUT.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pixforge.core.cli import output_dir, require_file
from pixforge.core.loop import read_metrics
from pixforge.export.atomic import atomic_path, write_text
from pixforge.export.errors import PixforgeError

SERIES = {"p": "augment/p", "lambda_r": "signs/real", "D(real)": "scores/real", "D(fake)": "scores/fake"}


def read_run(run: str | Path) -> dict[str, Any]:
    """The series of a run: kimg and each of SERIES per tick, and each metric's (kimg, value) points."""
    run = Path(run)
    records = read_metrics(require_file(run / "stats.jsonl", "run log"), {"kimg": (int, float)})
    if not records:
        raise PixforgeError(f"{run / 'stats.jsonl'} holds no tick yet: let the run reach its first tick")
    series: dict[str, Any] = {"kimg": [r["kimg"] for r in records]}
    for name, key in SERIES.items():
        series[name] = [_number(r.get(key)) for r in records]
    series["metrics"] = {}
    for path in sorted(run.glob("metric-*.jsonl")):
        for record in read_metrics(path, {"kimg": (int, float), "results": dict}):
            for key, value in record["results"].items():
                if key.startswith("num_"):
                    continue
                series["metrics"].setdefault(key, []).append((record["kimg"], _number(value)))
    return series


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def diagnose(run: str, out: str | None = None, overwrite: bool = False) -> str:
    """Plot p, lambda_r, D's real/fake logits and the quality metrics of RUN over kimg into OUT (default: RUN)
    as diagnose.png and diagnose.json."""
    series = read_run(run)
    folder = Path(run) if out is None else output_dir(out, overwrite)
    write_text(folder / "diagnose.json", json.dumps(series, indent=1))
    try:
        import matplotlib
    except ImportError:
        return f"wrote {folder / 'diagnose.json'} (install pixforge-apa[plots] for diagnose.png)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 + bool(series["metrics"])
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), constrained_layout=True)
    kimg = series["kimg"]
    axes[0].plot(kimg, series["p"], label="p")
    axes[0].set_title("augmentation probability p")
    axes[1].plot(kimg, series["lambda_r"], label="lambda_r")
    axes[1].axhline(0.6, color="grey", linestyle=":", label="target 0.6")
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].set_title("lambda_r = E[sign(D(real))]")
    axes[2].plot(kimg, series["D(real)"], label="D(real)")
    axes[2].plot(kimg, series["D(fake)"], label="D(fake)")
    axes[2].set_title("D's mean logits")
    if series["metrics"]:
        for name, points in series["metrics"].items():
            axes[3].plot([k for k, _ in points], [v for _, v in points], marker="o", label=name)
        axes[3].set_title("quality (lower is better)")
    for ax in axes:
        ax.set_xlabel("kimg")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    with atomic_path(folder / "diagnose.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return f"wrote {folder / 'diagnose.png'} and {folder / 'diagnose.json'}"
