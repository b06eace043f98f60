"""Fit `MESH_TO_68` of pixforge.core.faces.mediapipe_backend: which Face Mesh vertex stands for each dlib point.

    nox -s faces_mediapipe -- fit          # or, in an environment with mediapipe 0.10.21 and dlib:
    python tools/mediapipe_68.py --videos data/videos [--every 6]

On every --every-th frame of the offline face videos (`nox -s videos`) and on scikit-image's astronaut, the face
dlib's HOG finds gets dlib's 68 landmarks and mediapipe's 478-point mesh (fitted in dlib's box). Both are mapped by
the similarity that puts dlib's points on dlib's mean face (`alignment_matrix`, crop 1 x 1), and for each dlib point
the mesh vertex nearest it on average is chosen. Printed: the table, and the normalised mean error (mean distance /
outer-eye-corner distance, the 300-W convention) of the chosen vertices against dlib's points, per region and per
video, fitted on all videos and left-one-video-out (the table fitted without a video, measured on it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pixforge.core.faces import alignment_matrix, detect_faces, open_backend, transform_points
from pixforge.export.video import VideoReader

REGIONS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
           "mouth": range(48, 68)}


def collect(videos: Path, every: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(source, dlib 68 points, mesh 478 points) in dlib's unit mean-face frame, one per frame with a face."""
    from skimage import data

    dlib_backend = open_backend("dlib", detector="hog", upsample=1)
    mesh_backend = open_backend("mediapipe", points=478)
    frames = [("astronaut", data.astronaut())]
    for path in sorted(videos.glob("*.m[po][4v]")):
        with VideoReader(path, batch_size=32) as reader:
            index = 0
            for batch in reader:
                for frame in batch:
                    if index % every == 0:
                        frames.append((path.stem, frame))
                    index += 1
    samples = []
    for source, frame in frames:
        faces = detect_faces(frame, dlib_backend)
        if not faces:
            continue
        face = max(faces, key=lambda f: f.size)
        try:
            mesh = mesh_backend.mesh(frame, face.box)
        except Exception:  # noqa: BLE001 - the mesh misses some turned faces; those frames are skipped
            continue
        matrix = alignment_matrix(face.landmarks, size=1, padding=0.0)
        samples.append((source, transform_points(face.landmarks, matrix), transform_points(mesh, matrix)))
    return samples


def fit(samples) -> np.ndarray:
    """For each dlib point, the mesh vertex nearest it on average."""
    dlib = np.stack([s[1] for s in samples])  # N x 68 x 2
    mesh = np.stack([s[2] for s in samples])  # N x 478 x 2
    distance = np.linalg.norm(dlib[:, :, None, :] - mesh[:, None, :, :], axis=-1).mean(axis=0)  # 68 x 478
    return distance.argmin(axis=1)


def nme(samples, table: np.ndarray) -> dict:
    """Normalised mean error per region and overall: distance / outer-eye-corner distance (points 36, 45)."""
    dlib = np.stack([s[1] for s in samples])
    mesh = np.stack([s[2] for s in samples])[:, table]
    eyes = np.linalg.norm(dlib[:, 36] - dlib[:, 45], axis=-1)[:, None]
    error = np.linalg.norm(dlib - mesh, axis=-1) / eyes
    out = {name: float(error[:, list(idx)].mean()) for name, idx in REGIONS.items()}
    out["all"] = float(error.mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "videos")
    parser.add_argument("--every", type=int, default=6)
    args = parser.parse_args()
    samples = collect(args.videos, args.every)
    table = fit(samples)
    sources = sorted({s[0] for s in samples})
    held_out = {}
    for source in sources:
        train = [s for s in samples if s[0] != source]
        test = [s for s in samples if s[0] == source]
        held_out[source] = {"frames": len(test), **nme(test, fit(train))}
    report = {"frames": len(samples), "table": [int(v) for v in table], "nme_fitted": nme(samples, table),
              "nme_left_one_video_out": held_out}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
