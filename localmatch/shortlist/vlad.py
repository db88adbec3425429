"""VLAD over RootSIFT (Jegou et al. 2010, with the intra-normalisation of Arandjelovic & Zisserman 2013).

Each RootSIFT descriptor is projected to 32 dimensions (generic PCA) and re-normalised, assigned to the
nearest of 64 visual words, and the residuals are summed per word. Each word's sum is L2-normalised
(intra-normalisation), the whole vector is power-normalised (signed square root) and L2-normalised:
a ``(2048,) float32`` unit vector. The PCA and the words are generic: trained by
``weights/make_vlad_rootsift.py`` on photographs scikit-image ships, and installed with the package.

Measured on multiview_dev (every image queries all 79), mAP without re-ranking: 0.810 for this model;
full 128-d words (8192-d vectors) scored 0.846 but cost 4x the memory and search time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files

import faiss
import numpy as np

from localmatch.io import Image
from localmatch.shortlist import GLOBAL_DESCRIPTORS
from localmatch.types import Features

MODEL_FILE = "vlad_rootsift.npz"


@dataclass(frozen=True, eq=False)
class VladModel:
    """The learned parts: ``mean (128,)``, ``basis (d, 128)``, ``centroids (k, d)``."""

    mean: np.ndarray
    basis: np.ndarray
    centroids: np.ndarray

    @staticmethod
    def load_shipped() -> "VladModel":
        with np.load(str(files("localmatch.shipped") / MODEL_FILE), allow_pickle=False) as z:
            return VladModel(z["mean"], z["basis"], z["centroids"])


@dataclass(eq=False)
class Vlad:
    """The ``"vlad"`` global descriptor (see the module docstring)."""

    model: VladModel = field(default_factory=VladModel.load_shipped)
    name: str = "vlad"
    accepts: tuple[str, ...] = ("rootsift",)
    needs_pixels: bool = False

    def __post_init__(self) -> None:
        self._words = faiss.IndexFlatL2(self.model.centroids.shape[1])
        self._words.add(np.ascontiguousarray(self.model.centroids, dtype=np.float32))

    @property
    def dim(self) -> int:
        return int(self.model.centroids.size)

    def describe(self, image: Image | None, features: Features) -> np.ndarray:
        """``(k * d,) float32`` unit vector; all zeros for an image without features."""
        k, d = self.model.centroids.shape
        if len(features) == 0:
            return np.zeros(k * d, np.float32)
        x = (features.descriptors - self.model.mean) @ self.model.basis.T
        x = np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=np.float32)
        _, word = self._words.search(x, 1)
        word = word[:, 0]
        sums = np.zeros((k, d), np.float64)
        np.add.at(sums, word, x - self.model.centroids[word])
        sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        v = sums.ravel()
        v = np.sign(v) * np.sqrt(np.abs(v))
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


GLOBAL_DESCRIPTORS.add("vlad", Vlad)
