"""Shared helpers: one torch thread per test (tiny networks run faster without intra-op threading on a busy 2-core
machine), synthetic 68-point face layouts, a synthetic face video, and a prepared dataset built without face
detection (fixtures returning the helper functions)."""

import math

import pytest
import torch

from pixforge.core.datagen import single_thread as one_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def synthetic_landmarks():
    """`synthetic_landmarks(n, size, seed=0)`: see `_synthetic_landmarks`."""
    return _synthetic_landmarks


@pytest.fixture(scope="session")
def face_video(tmp_path_factory):
    """A 12-frame 160 x 160 video of the astronaut's face, jittered per frame (`face_frames`)."""
    return write_video(tmp_path_factory.mktemp("video") / "astro.mp4", face_frames(12, 160))


@pytest.fixture(scope="session")
def frames_maker():
    """`frames_maker(count, side, seed=0)`: see `face_frames`."""
    return face_frames


@pytest.fixture(scope="session")
def video_writer():
    """`video_writer(path, frames, fps=25)`: see `write_video`."""
    return write_video


@pytest.fixture(scope="session")
def dataset_maker():
    """`dataset_maker(root, {name: frames}, size=64, seed=0)`: see `make_dataset`."""
    return make_dataset


def _synthetic_landmarks(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, 68, 2) plausible iBUG-68 layouts in a size x size crop: jaw on the lower half of an ellipse, brows above
    the eyes, nose, eyes and mouth inside, each face jittered in position and scale."""
    g = torch.Generator().manual_seed(seed)
    faces = []
    for _ in range(n):
        cx, cy = size * (0.5 + 0.04 * (torch.rand(1, generator=g).item() - 0.5)), size * 0.45
        r = size * (0.32 + 0.04 * torch.rand(1, generator=g).item())
        jaw = [(cx - r * math.cos(math.pi * i / 16), cy + 1.2 * r * math.sin(math.pi * i / 16)) for i in range(17)]
        brows = [(cx - r * (0.8 - 0.15 * i), cy - 0.45 * r - 0.05 * r * (2 - abs(i - 2))) for i in range(5)]
        brows += [(cx + r * (0.2 + 0.15 * i), cy - 0.45 * r - 0.05 * r * (2 - abs(i - 2))) for i in range(5)]
        nose = [(cx, cy - 0.2 * r + 0.12 * r * i) for i in range(4)] + [(cx + 0.1 * r * (i - 2), cy + 0.35 * r)
                                                                          for i in range(5)]
        eye = [(math.cos(2 * math.pi * i / 6), 0.4 * math.sin(2 * math.pi * i / 6)) for i in range(6)]
        eyes = [(cx - 0.4 * r + 0.15 * r * x, cy - 0.2 * r + 0.15 * r * y) for x, y in eye]
        eyes += [(cx + 0.4 * r + 0.15 * r * x, cy - 0.2 * r + 0.15 * r * y) for x, y in eye]
        ring = [(math.cos(2 * math.pi * i / 20), math.sin(2 * math.pi * i / 20)) for i in range(20)]
        mouth = [(cx + 0.35 * r * x, cy + 0.7 * r + 0.12 * r * y) for x, y in ring]
        faces.append(jaw + brows + nose + eyes + mouth)
    return torch.tensor(faces, dtype=torch.float32)


def face_frames(count: int = 12, side: int = 160, seed: int = 0):
    """`count` uint8 frames of `side` px around the astronaut's face (scikit-image), each shifted and scaled a
    little (a hand-held camera), for the face-detection tests."""
    import numpy as np
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut())
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        half = 100 * (1 + rng.uniform(-0.06, 0.06))
        cx, cy = 223 + rng.uniform(-6, 6), 120 + rng.uniform(-6, 6)
        box = (cx - half, max(0.0, cy - half), cx + half, cy + half)
        frames.append(np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, box=box)))
    return np.stack(frames)


def write_video(path, frames, fps: int = 25):
    from pixforge.core.io import VideoWriter

    with VideoWriter(path, fps, crf=12, preset="ultrafast") as writer:
        writer.write(frames)
    return path


def make_dataset(root, clips: dict[str, int], size: int = 64, seed: int = 0):
    """A prepared DATA folder without face detection: per identity name -> frame count, one source and clip of
    jittered crops of an embedded photo with synthetic landmarks (what `prepare` writes, via `write_clip`)."""
    import json
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from pixforge.core.io import embedded_images
    from pixforge.dfvae.prepare import FORMAT, write_clip

    root = Path(root)
    photos = embedded_images(["astronaut", "chelsea", "coffee", "rocket"])
    for k, (name, count) in enumerate(clips.items()):
        rng = np.random.default_rng(seed + k)
        image = Image.fromarray(photos[k % len(photos)])
        base = _synthetic_landmarks(1, size, seed=seed + k).numpy()[0]
        crops, landmarks = [], []
        for _ in range(count):  # the camera moves: the picture and its landmarks shift together
            dx, dy = rng.uniform(-size / 10, size / 10, 2)
            x, y = 170 - dx * 200 / size, 70 - dy * 200 / size
            box = (x, y, x + 200, y + 200)
            crops.append(np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box)))
            landmarks.append(base + np.float32([dx, dy]))
        landmarks = np.stack(landmarks).astype(np.float32)
        affines = np.tile(np.array([[0.32, 0, -50.0], [0, 0.32, -20.0]]), (count, 1, 1))
        folder = root / f"{name}-0000000{k}"
        clip = write_clip(folder / "track-0", np.stack(crops), landmarks, affines, np.arange(count), name)
        record = {"format": FORMAT, "path": str(folder), "kind": "video", "identity": name, "frames": count,
                  "frames_with_face": count, "fps": 25.0, "tracks_found": 1, "clips": [clip],
                  "options": {"size": size, "padding": 0.25}, "versions": {}}
        (folder / "source.json").write_text(json.dumps(record))
    return root


@pytest.fixture(scope="session")
def occluder_maker():
    """`occluder_maker(path, size=64, batch=1, channels_last=True)`: see `blue_occluder`."""
    return blue_occluder


def blue_occluder(path, size: int | None = 64, batch: int | None = 1, channels_last: bool = True):
    """An ONNX face occluder in the XSeg convention (BGR in [0, 1]; mask 1 where the face is visible) that sees
    strongly blue pixels as an occluder: mask = 1 - sigmoid(40 (B - max(G, R) - 0.3)). `size` / `batch` None:
    dynamic; `channels_last` False: N x 3 x H x W in, N x 1 x H x W out."""
    import onnx
    from onnx import TensorProto, helper

    axis = 3 if channels_last else 1
    dims = [batch or "n", size or "h", size or "w"]
    in_shape = [*dims, 3] if channels_last else [dims[0], 3, *dims[1:]]
    out_shape = [*dims, 1] if channels_last else [dims[0], 1, *dims[1:]]
    const = [helper.make_tensor(name, TensorProto.FLOAT, [], [value])
             for name, value in (("shift", 0.3), ("gain", 40.0), ("one", 1.0))]
    nodes = [helper.make_node("Split", ["input"], ["b", "g", "r"], axis=axis, num_outputs=3),
             helper.make_node("Max", ["g", "r"], ["gr"]), helper.make_node("Sub", ["b", "gr"], ["d"]),
             helper.make_node("Sub", ["d", "shift"], ["e"]), helper.make_node("Mul", ["e", "gain"], ["f"]),
             helper.make_node("Sigmoid", ["f"], ["s"]), helper.make_node("Sub", ["one", "s"], ["output"])]
    graph = helper.make_graph(nodes, "blue", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], const)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
