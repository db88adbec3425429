"""What decoding HEIF in a child process (localmatch.heif) costs, next to decoding it in this process.

Run: python bench/heif_decode.py [FILE.heic ...] [--repeats 9]

Without files it uses tests/data/astronaut_rotated.heic (256 x 200) and, where the encoding plugin
pillow-heif is installed (not a localmatch dependency: it bundles the GPL x265 encoder), a 4032 x 3024
photograph (scikit-image's astronaut, resized) that it encodes at quality 90. For each file: the median
seconds of ``load_image`` (through the child, which was started before timing) and of
``localmatch.io.decode_here`` (the same decoder in this process), run in turns, and their difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localmatch.io import decode_here, load_image

SMALL = Path(__file__).resolve().parents[1] / "tests" / "data" / "astronaut_rotated.heic"


_ENCODE = """
import sys, cv2, PIL.Image, pillow_heif, skimage.data
pillow_heif.register_heif_opener()
PIL.Image.fromarray(cv2.resize(skimage.data.astronaut(), (4032, 3024))).save(sys.argv[1], quality=90)
"""


def phone_sized_heic(folder: Path) -> Path | None:
    """A 4032 x 3024 HEIC file (what a 12 MP phone camera saves), or None without pillow-heif's encoder.
    Encoded by another Python, so that this one decodes with the plugin localmatch picks (pi-heif first)."""
    if importlib.util.find_spec("pillow_heif") is None:
        return None
    path = folder / "astronaut_4032x3024.heic"
    subprocess.run([sys.executable, "-c", _ENCODE, str(path)], check=True)
    return path


def decode_file_here(path: Path) -> None:
    with open(path, "rb") as f:
        decode_here(f, str(path), 10**9)


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        files = args.files or [SMALL, *filter(None, [phone_sized_heic(Path(folder))])]
        print("| file | size | child s | in-process s | child minus in-process, ms |")
        print("|---|---|---|---|---|")
        for path in files:
            size = load_image(path).size  # also starts the child
            times = [(seconds(lambda: load_image(path)), seconds(lambda: decode_file_here(path)))
                     for _ in range(args.repeats)]  # interleaved, so both see the machine in the same state
            child, here = (statistics.median(column) for column in zip(*times))
            print(f"| {path.name} | {size[0]} x {size[1]} | {child:.3f} | {here:.3f} | {1000 * (child - here):.0f} |")


if __name__ == "__main__":
    main()
