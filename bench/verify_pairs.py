"""A list of pairs on the command line: one `localmatch verify A B` process per pair against one
`localmatch verify --pairs FILE` run, on the 20 pairs of oxford_affine_vgg (6 images per scene, image 1
in five pairs).

Run: LOCALMATCH_DATA=../shared/data python bench/verify_pairs.py [--before REV]

Both print JSON; the script checks that they agree pair by pair (inlier counts and verdicts) and reports
the wall time of each, process start-up included, as a user running them would see it. ``--before REV``
also runs the same commands with the code of git revision REV (a temporary worktree), each process
alternating with this checkout's, for a comparison in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import data_dir

SEQUENCES = ("bikes", "boat", "graf", "leuven")
REPO = Path(__file__).resolve().parent.parent


def run(argv: list[str], code: Path) -> tuple[list[dict], float]:
    """``localmatch ARGV`` with the package found in ``code``, its JSON lines and its wall time in s."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "localmatch.cli", *argv], capture_output=True, text=True,
                         check=True, env=env, cwd=tempfile.gettempdir())  # not a folder that holds a localmatch
    return [json.loads(line) for line in out.stdout.splitlines()], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV", help="also run git revision REV's code, alternating")
    args = parser.parse_args()
    root = data_dir("oxford_affine_vgg")
    pairs = []
    for seq in SEQUENCES:
        images = sorted((root / seq).glob("img*.p?m"))
        pairs += [(str(images[0]), str(images[k])) for k in range(1, 6)]
    with tempfile.TemporaryDirectory() as tmp:
        codes = {"this checkout": REPO}
        if args.before:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", f"{tmp}/before", args.before],
                           check=True, capture_output=True)
            codes[f"revision {args.before}"] = Path(tmp) / "before"
        pairs_file = Path(tmp) / "pairs.txt"
        pairs_file.write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
        try:
            rows = measure(pairs, pairs_file, codes)
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", f"{tmp}/before"], check=True)
    print("| code | how | pairs | s in all | s per pair | same inliers and verdicts (all rows) |\n|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def measure(pairs: list[tuple[str, str]], pairs_file: Path, codes: dict[str, Path]) -> list[tuple[str, ...]]:
    one_by_one = {label: [] for label in codes}
    seconds_each = {label: [] for label in codes}
    for a, b in pairs:
        for label, code in codes.items():
            result, seconds = run(["verify", a, b, "--json"], code)
            one_by_one[label] += result
            seconds_each[label].append(seconds)
    def verdicts(results: list[dict]) -> list[tuple[int, bool]]:
        return [(r["num_inliers"], r["is_match"]) for r in results]

    reference = verdicts(one_by_one["this checkout"])
    rows = []
    for label, code in codes.items():
        batch, seconds_batch = run(["verify", "--pairs", str(pairs_file), "--json"], code)
        agree = verdicts(one_by_one[label]) == verdicts(batch) == reference
        total = sum(seconds_each[label])
        rows.append((label, "one `localmatch verify A B` per pair", str(len(pairs)), f"{total:.1f}",
                     f"{total / len(pairs):.2f}", "-"))
        rows.append((label, "one `localmatch verify --pairs FILE`", str(len(batch)), f"{seconds_batch:.1f}",
                     f"{seconds_batch / len(pairs):.2f}", "yes" if agree else "NO"))
    return rows


if __name__ == "__main__":
    main()
