"""Evaluation of a trained detector on extract-faces folders: frame- and video-level ACC, AUC, log loss, EER.

"Frame" metrics are per evaluation item (`pixforge.forensics.data.EvalClips`): a frame for Xception, a clip for
the video models (non-overlapping clips; one clip of `clip` segment middles for TSN); "video" metrics use the mean
of a video's item probabilities. ACC takes "fake" = P(fake) >= 0.5.

Sets: `--fake DIR` as it is; `--variant std,single-level,random,mixed` reads make-variants' folders below --fake
(the extract-faces output of make-variants' `manipulated_videos/`): std = end_to_end, single-level =
end_to_end_level_5 (the thesis' std/sing: level 5, random type), level-1 .. level-5, random =
end_to_end_random_level (std/rand), mixed = end_to_end_mix_3_distortions (std/mix: three distortions), mix-2 /
mix-4; `--distort TYPE:LEVEL` distorts the items on the fly (VC: a libx264 encode at the level's CRF);
`--per-distortion` adds the 7 types x 5 levels table (frame-level ACC and AUC; the thesis' Table 3.4 reports
accuracy per training / test variant, this table splits the test side by type and level). On-the-fly distortions
touch real and fake items alike (`--distort-fake-only`: only the fakes, as DeeperForensics-1.0's variants, whose
real videos are the undistorted YouTube ones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pixforge.export.atomic import atomic_path, write_text
from pixforge.export.errors import PixforgeError
from pixforge.forensics import data as fdata
from pixforge.forensics.detector import load_run, predict, video_level
from pixforge.forensics.distortions import LEVELS, TYPES
from pixforge.forensics.metrics import roc_curve, summary

VARIANTS = {"std": "end_to_end", "single-level": "end_to_end_level_5", "random": "end_to_end_random_level",
            "mixed": "end_to_end_mix_3_distortions", "mix-2": "end_to_end_mix_2_distortions",
            "mix-4": "end_to_end_mix_4_distortions",
            **{f"level-{k}": f"end_to_end_level_{k}" for k in LEVELS}}


def variant_folders(fake: str, variants: str) -> list[tuple[str, Path]]:
    """(name, folder) of each --variant below --fake (itself or its manipulated_videos/)."""
    names = [v.strip() for v in str(variants).split(",") if v.strip()] if not isinstance(variants, (list, tuple)) \
        else list(variants)
    out = []
    for name in names:
        if name not in VARIANTS:
            raise PixforgeError(f"unknown --variant {name!r}: choose from {', '.join(VARIANTS)}")
        for base in (Path(fake), Path(fake) / "manipulated_videos"):
            if (base / VARIANTS[name]).is_dir():
                out.append((name, base / VARIANTS[name]))
                break
        else:
            raise PixforgeError(f"--variant {name}: {Path(fake) / VARIANTS[name]} does not exist (extract the faces "
                                f"of make-variants' manipulated_videos/{VARIANTS[name]} there)")
    return out


def evaluate(run: str | None = None, real: str | None = None, fake: str | None = None, out: str | None = None,
             variant: str | None = None, distort: str | None = None, per_distortion: bool = False,
             distort_fake_only: bool = False, batch: int = 16, workers: int = 0, seed: int = 0, device: str = "auto",
             limit: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate the detector of --run on --real DIR against --fake DIR|sbi (extract-faces folders): frame-level and
    video-level (mean of frame probabilities) ACC, AUC, log loss, EER into OUT/report.json, OUT/predictions.json
    (every item's probability) and OUT/roc.png (when matplotlib is installed). --variant std,single-level,random,
    mixed evaluates make-variants' folders below --fake; --distort TYPE:LEVEL distorts on the fly;
    --per-distortion adds the 7 types x 5 levels table (OUT/per_distortion.md)."""
    from pixforge.core.runtime import resolve_device
    from pixforge.export.options import check_numbers, check_outside

    check_numbers({"batch": batch, "workers": workers, "seed": seed, "limit": limit},
                  integers={"batch": 1, "workers": 0, "seed": 0, "limit": 2})
    if run is None or real is None or fake is None or out is None:
        raise PixforgeError("--run RUN, --real DIR, --fake DIR|sbi and --out REPORT are required")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise PixforgeError(f"--out {out_dir} exists and is not a folder")
    check_outside(out_dir, [run, real, None if str(fake).lower() == "sbi" else fake])
    if (out_dir / "report.json").exists() and not overwrite:
        raise PixforgeError(f"{out_dir / 'report.json'} already exists: pass --overwrite to replace it")
    det, arch = load_run(run)
    distortion = fdata.parse_distortion(distort) if distort is not None else None
    sbi = str(fake).lower() == "sbi"
    if sbi and variant is not None:
        raise PixforgeError("--variant reads make-variants folders: it needs --fake DIR, not sbi")
    real_videos = fdata.scan(real, "--real", landmarks=sbi)
    sets = ([(name, fdata.scan(folder, f"--variant {name}")) for name, folder in variant_folders(fake, variant)]
            if variant is not None else [("fake", "sbi" if sbi else fdata.scan(fake, "--fake"))])
    dev = resolve_device(device)
    det = det.to(dev)

    def run_set(fakes, dist=None):
        data = fdata.EvalClips(real_videos, fakes, arch["clip"], arch["size"], arch["sampling"], seed,
                               distortion=dist, limit=limit, distort_fake_only=distort_fake_only)
        return predict(det, data, batch=batch, workers=workers, device=dev)

    report: dict[str, Any] = {"run": str(run), "arch": arch, "real": str(real), "fake": str(fake),
                              "distortion": distort, "seed": seed, "sets": {}}
    predictions, curves = {}, {}
    for name, fakes in sets:
        probs, labels, meta = run_set(fakes, distortion)
        v_probs, v_labels, keys = video_level(probs, labels, meta)
        report["sets"][name] = {"frame": summary(labels, probs), "video": summary(v_labels, v_probs)}
        predictions[name] = {"items": [{**m, "label": int(y), "p_fake": float(p)}
                                       for m, y, p in zip(meta, labels, probs, strict=True)],
                             "videos": {k: float(p) for k, p in zip(keys, v_probs, strict=True)}}
        curves[name] = roc_curve(labels, probs)[:2]
    if per_distortion:
        name, fakes = sets[0]
        table = {}
        for kind in TYPES:
            for level in LEVELS:
                probs, labels, _ = run_set(fakes, (kind, level))
                s = summary(labels, probs)
                table[f"{kind}:{level}"] = {"acc": s["acc"], "auc": s["auc"]}
        report["per_distortion"] = {"set": name, "table": table}
    out_dir.mkdir(parents=True, exist_ok=True)
    report["plots"] = _roc_plot(curves, out_dir / "roc.png")
    if per_distortion:
        write_text(out_dir / "per_distortion.md", per_distortion_markdown(report["per_distortion"]["table"]))
    write_text(out_dir / "predictions.json", json.dumps(predictions, indent=1))
    write_text(out_dir / "report.json", json.dumps(_finite(report), indent=2))  # last: its presence means done
    return report


def per_distortion_markdown(table: dict[str, dict[str, float]]) -> str:
    lines = ["| type | " + " | ".join(f"level {k}" for k in LEVELS) + " |", "|---|" + "---|" * len(LEVELS)]
    for kind in TYPES:
        cells = [f"{100 * table[f'{kind}:{k}']['acc']:.2f}" for k in LEVELS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "Frame-level accuracy (%) per distortion type and level\n\n" + "\n".join(lines) + "\n"


def _roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib is not installed (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    for name, (fpr, tpr) in curves.items():
        if not np.isnan(fpr).any() and not np.isnan(tpr).any():
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (frame level)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return str(path)


def _finite(value):
    """JSON-safe: nan / inf as strings."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
