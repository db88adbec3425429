"""Near-duplicate detection: localmatch dedup beside imagededup's perceptual hash (PHash), in one run.

Run: LOCALMATCH_DATA=../shared/data python bench/dedup.py [--originals N] [--source ukbench|multiview]
(needs `pip install --no-deps imagededup==0.3.3.post2 PyWavelets scikit-learn`; imagededup's PHash module
is loaded on its own, so its CNN part and torchvision are not needed)

Generated set: every ukbench_subset image and 9 copies of it, made with these documented, seeded
transforms: crop (a random 60-80 % window), rotation by 90, rotation by 180, scaling by 0.5, JPEG quality
10-30, colour jitter (brightness x0.7-1.3, saturation x0.5-1.5, hue shift up to 10 degrees), text overlay,
horizontal flip, mild perspective (corners moved by up to 6 % of the size). Pairs within one family are
duplicates; the other photographs of the same UKBench object (groups of 4) are "same scene", counted as
negatives. ``--source multiview`` makes the same copies of the 79 multiview_dev photographs instead (their
scene folders are the "same scene" groups): a second check, on photos the duplicate test's thresholds
were not chosen on (except the inlier-spread threshold, added after this set showed the need). Also
imagededup's own test images (base + mixed: flips, resize, rotation; a corrupt file).
Pairwise precision and recall are over the pairs implied by the reported groups.
"""

from __future__ import annotations

import argparse
import json
import importlib.util
import itertools
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from common import data_dir
from localmatch.dedup import find_duplicates

TRANSFORMS = ("crop", "rot90", "rot180", "scale", "jpeg", "colour", "text", "hflip", "perspective")


def transform(pixels: np.ndarray, name: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One transformed copy (BGR) and the JPEG quality to save it with."""
    h, w = pixels.shape[:2]
    quality = 95
    if name == "crop":
        fw, fh = rng.uniform(0.6, 0.8, 2)
        x0, y0 = int(rng.uniform(0, 1 - fw) * w), int(rng.uniform(0, 1 - fh) * h)
        out = pixels[y0:y0 + int(fh * h), x0:x0 + int(fw * w)]
    elif name == "rot90":
        out = cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    elif name == "rot180":
        out = cv2.rotate(pixels, cv2.ROTATE_180)
    elif name == "scale":
        out = cv2.resize(pixels, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    elif name == "jpeg":
        out, quality = pixels, int(rng.integers(10, 31))
    elif name == "colour":
        hsv = cv2.cvtColor(pixels, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.7, 1.3), 0, 255)
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    elif name == "text":
        out = pixels.copy()
        cv2.putText(out, "localmatch 2026", (int(0.05 * w), int(0.55 * h)), cv2.FONT_HERSHEY_SIMPLEX,
                    w / 400, (255, 255, 255), max(2, w // 150), cv2.LINE_AA)
    elif name == "hflip":
        out = pixels[:, ::-1]
    else:  # perspective
        src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
        dst = (src + rng.uniform(-0.06, 0.06, (4, 2)) * [w, h]).astype(np.float32)
        out = cv2.warpPerspective(pixels, cv2.getPerspectiveTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT)
    return np.ascontiguousarray(out), quality


def originals(source: str, count: int) -> list[tuple[Path, str]]:
    """``(photo, scene)`` for the photographs copies are made of; photos of one scene are "same scene"."""
    if source == "ukbench":
        photos = sorted((data_dir("ukbench_subset") / "images").glob("*.jpg"))
        return [(p, str(int(p.stem[len("ukbench"):]) // 4)) for p in photos][:count]
    photos = sorted(p for p in data_dir("multiview_dev").glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [(p, p.parent.name) for p in photos][:count]


def make_generated_set(folder: Path, sources: list[tuple[Path, str]]) -> tuple[list[str], set, set]:
    """Files, duplicate pairs, same-scene pairs."""
    rng = np.random.default_rng(0)
    files, family, scene = [], {}, {}
    for number, (src, src_scene) in enumerate(sources):
        pixels = cv2.imread(str(src))
        stem = src.stem if src.stem.startswith("ukbench") else f"{src_scene}-{src.stem}".replace("_", "-")
        members = [folder / f"{stem}.jpg"]
        cv2.imwrite(str(members[0]), pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
        for name in TRANSFORMS:
            out, quality = transform(pixels, name, rng)
            path = folder / f"{stem}_{name}.jpg"
            cv2.imwrite(str(path), out, [cv2.IMWRITE_JPEG_QUALITY, quality])
            members.append(path)
        for m in members:
            family[str(m)], scene[str(m)] = number, src_scene
        files += [str(m) for m in members]
    duplicates = {frozenset(p) for p in itertools.combinations(files, 2) if family[p[0]] == family[p[1]]}
    same_scene = {frozenset(p) for p in itertools.combinations(files, 2)
                  if family[p[0]] != family[p[1]] and scene[p[0]] == scene[p[1]]}
    return files, duplicates, same_scene


def group_pairs(groups) -> set:
    return {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}


def load_phash():
    """imagededup's PHash class without its CNN half: the package's ``utils`` and ``methods`` __init__ files
    import torchvision (no CPU build here), so those two packages are registered bare and only the modules
    PHash needs are executed. The hashing code itself runs unchanged."""
    import types

    spec = importlib.util.find_spec("imagededup")
    if spec is None:
        sys.exit("needs imagededup: pip install --no-deps imagededup==0.3.3.post2 PyWavelets scikit-learn matplotlib")
    root = Path(spec.origin).parent
    for name in ("utils", "methods"):
        package = types.ModuleType(f"imagededup.{name}")
        package.__path__ = [str(root / name)]
        sys.modules[f"imagededup.{name}"] = package
    from imagededup.methods.hashing import PHash

    return PHash


def phash_pairs(files: list[str], threshold: int = 10) -> set:
    """imagededup PHash at its default Hamming threshold (10), pairs by encoding every file."""
    phash = load_phash()()
    codes = {f: phash.encode_image(image_file=f) for f in files}
    codes = {f: c for f, c in codes.items() if c}
    bits = {f: np.array([int(b) for b in bin(int(c, 16))[2:].zfill(64)], np.uint8) for f, c in codes.items()}
    names = list(bits)
    matrix = np.stack([bits[n] for n in names])
    distance = (matrix[:, None, :] != matrix[None, :, :]).sum(-1)
    return {frozenset((names[i], names[j])) for i, j in zip(*np.nonzero(np.triu(distance <= threshold, 1)))}


def score(found: set, duplicates: set) -> tuple[float, float]:
    tp = len(found & duplicates)
    return (tp / len(found) if found else 1.0), tp / len(duplicates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=None, help="photos to make copies of (default: all)")
    parser.add_argument("--source", choices=("ukbench", "multiview"), default="ukbench",
                        help="ukbench_subset (the set the thresholds were chosen on) or multiview_dev")
    parser.add_argument("--dump", metavar="PAIRS.json", help="write every verified pair with its cues and truth")
    parser.add_argument("--only", choices=("generated", "imagededup"), default=None,
                        help="run one part: the generated copies, or imagededup's test files")
    args = parser.parse_args()
    if args.only != "imagededup":
        generated_set(args)
    if args.only != "generated":
        imagededup_testdata()


def generated_set(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sources = originals(args.source, args.originals or 10 ** 6)
        files, duplicates, same_scene = make_generated_set(Path(tmp), sources)
        start = time.perf_counter()
        report = find_duplicates(files, progress=False)
        seconds = time.perf_counter() - start
        ours = group_pairs(report.groups)
        start = time.perf_counter()
        theirs = phash_pairs(files)
        phash_seconds = time.perf_counter() - start
        name = "UKBench" if args.source == "ukbench" else "multiview_dev"
        print(f"## Generated near-duplicates: {len(files)} images ({len(sources)} {name} originals x 10), "
              f"{len(duplicates)} duplicate pairs, {len(same_scene)} same-scene pairs\n")
        print("| method | pairwise precision | pairwise recall | same-scene pairs called duplicate | s |")
        print("|---|---|---|---|---|")
        for name, found, t in (("localmatch dedup", ours, seconds), ("imagededup PHash (threshold 10)", theirs, phash_seconds)):
            p, r = score(found, duplicates)
            print(f"| {name} | {p:.3f} | {r:.3f} | {len(found & same_scene)} | {t:.0f} |")
        per_transform = {t: [0, 0] for t in TRANSFORMS}
        for pair in duplicates:
            a, b = sorted(pair, key=len)
            kind = Path(b).stem.split("_")[-1]
            if "_" not in Path(a).stem and kind in per_transform:
                per_transform[kind][1] += 1
                per_transform[kind][0] += pair in ours
        print("\nRecall of original <-> copy pairs by transform (localmatch):",
              ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in per_transform.items()))
        relations = {}
        for p in report.pairs:
            key = frozenset((p.a, p.b))
            kind = "duplicate" if key in duplicates else "same-scene" if key in same_scene else "unrelated"
            relations.setdefault((kind, p.relation), 0)
            relations[(kind, p.relation)] += 1
        print("Verified pairs, truth -> reported relation:", relations)
        if args.dump:
            rows = [{**p.to_dict(), "a": Path(p.a).name, "b": Path(p.b).name,
                     "truth": "duplicate" if frozenset((p.a, p.b)) in duplicates else
                     "same-scene" if frozenset((p.a, p.b)) in same_scene else "unrelated"} for p in report.pairs]
            Path(args.dump).write_text(json.dumps(rows, indent=0))



def imagededup_testdata() -> None:
    """imagededup's own test files; mixed_images/ukbench00120.jpg and ukbench09268.jpg have the same bytes as
    their base_images namesakes (left out until session 15, when such copies were not reported)."""
    base = data_dir("imagededup_testdata")
    files = [str(p) for p in sorted((base / "base_images").glob("*.jpg"))]
    files += [str(p) for p in sorted((base / "mixed_images").glob("*.jpg"))]
    report = find_duplicates(files, progress=False)
    print(f"\n## imagededup_testdata: {len(files)} files (base images, and mixed copies of ukbench00120 and "
          "ukbench09268 including two byte-identical ones and a corrupt file)\n")
    print("localmatch groups:", [[str(Path(p).relative_to(base)) for p in g] for g in report.groups])
    print("localmatch failures:", [(Path(p).name, r) for p, r in report.failed])
    print("PHash pairs:", sorted(tuple(sorted(str(Path(p).relative_to(base)) for p in pair))
                                 for pair in phash_pairs(files)))


if __name__ == "__main__":
    main()
