"""Train the generic VLAD model shipped as weights/vlad_rootsift.npz.

    python weights/make_vlad_rootsift.py

Data: every photograph in the scikit-image wheel's data folder (version printed and stored), RootSIFT
with localmatch's default extractor. Nothing from the evaluation sets is used. Steps:
1. PCA of the RootSIFT descriptors to 32 dimensions (mean and basis kept, no whitening).
2. faiss k-means, 64 centroids on the unit-normalised 32-d descriptors, seed 0.
The output (about 25 KB) holds ``mean (128,)``, ``basis (32, 128)``, ``centroids (64, 32)`` and
``version`` (a text of the training set) and is read with ``allow_pickle=False``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import faiss
import numpy as np
import skimage

import localmatch

LOCAL_DIM = 32
NUM_WORDS = 64
SEED = 0


def training_descriptors() -> np.ndarray:
    folder = files("skimage") / "data"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith((".png", ".jpg")))
    out = []
    for name in names:
        try:
            out.append(localmatch.extract(str(folder / name)).descriptors)
        except localmatch.ImageError:
            continue
    return np.concatenate(out)


def main() -> None:
    desc = training_descriptors().astype(np.float64)
    mean = desc.mean(axis=0)
    _, _, vt = np.linalg.svd(desc - mean, full_matrices=False)
    basis = vt[:LOCAL_DIM]
    reduced = (desc - mean) @ basis.T
    reduced /= np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
    kmeans = faiss.Kmeans(LOCAL_DIM, NUM_WORDS, niter=50, seed=SEED)
    kmeans.train(reduced.astype(np.float32))
    out = Path(__file__).with_name("vlad_rootsift.npz")
    np.savez(out, mean=mean.astype(np.float32), basis=basis.astype(np.float32),
             centroids=kmeans.centroids.astype(np.float32),
             version=np.array(f"scikit-image {skimage.__version__} data, {len(desc)} RootSIFT descriptors"))
    print(f"wrote {out} from {len(desc)} descriptors")


if __name__ == "__main__":
    main()
