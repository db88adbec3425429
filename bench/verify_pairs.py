"""A list of pairs on the command line: one `localmatch verify A B` process per pair against one
`localmatch verify --pairs FILE` run, on the 20 pairs of oxford_affine_vgg (6 images per scene, image 1
in five pairs).

Run: LOCALMATCH_DATA=../shared/data python bench/verify_pairs.py

Both print JSON; the script checks that they agree pair by pair (inlier counts and verdicts) and reports
the wall time of each, process start-up included, as a user running them would see it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import data_dir

SEQUENCES = ("bikes", "boat", "graf", "leuven")


def run(argv: list[str]) -> tuple[list[dict], float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "localmatch.cli", *argv], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()], time.perf_counter() - start


def main() -> None:
    root = data_dir("oxford_affine_vgg")
    pairs = []
    for seq in SEQUENCES:
        images = sorted((root / seq).glob("img*.p?m"))
        pairs += [(str(images[0]), str(images[k])) for k in range(1, 6)]
    one_by_one, seconds_each = [], []
    for a, b in pairs:
        result, seconds = run(["verify", a, b, "--json"])
        one_by_one += result
        seconds_each.append(seconds)
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = Path(tmp) / "pairs.txt"
        pairs_file.write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
        batch, seconds_batch = run(["verify", "--pairs", str(pairs_file), "--json"])
    agree = all((x["num_inliers"], x["is_match"]) == (y["num_inliers"], y["is_match"]) for x, y in zip(one_by_one, batch))
    print(f"| how | pairs | s in all | s per pair | same inliers and verdicts |\n|---|---|---|---|---|")
    print(f"| one `localmatch verify A B` per pair | {len(pairs)} | {sum(seconds_each):.1f} | "
          f"{sum(seconds_each) / len(pairs):.2f} | - |")
    print(f"| one `localmatch verify --pairs FILE` | {len(batch)} | {seconds_batch:.1f} | "
          f"{seconds_batch / len(pairs):.2f} | {'yes' if agree and len(batch) == len(pairs) else 'NO'} |")
    print(f"\nspeed-up: {sum(seconds_each) / seconds_batch:.1f}x")


if __name__ == "__main__":
    main()
