"""Global descriptors (one vector per image) and the faiss index that shortlists with them.

A global descriptor is registered by name; it turns an image's local features (and, for CNN
descriptors, its pixels) into one L2-normalised ``(D,) float32`` vector compared by inner product.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from localmatch.io import Image
from localmatch.registry import Registry
from localmatch.types import Features


class GlobalDescriptor(Protocol):
    name: str
    dim: int
    #: extractor names (``Features.extractor``) whose features it aggregates; empty = needs none
    accepts: tuple[str, ...]
    #: describes the image's pixels (a CNN), so ``describe`` needs the image, not only its features
    needs_pixels: bool

    def describe(self, image: Image | None, features: Features) -> np.ndarray:
        """``(D,) float32`` unit vector for one image."""
        ...


GLOBAL_DESCRIPTORS: Registry = Registry("global descriptor")


#: The shortlist descriptor of a new database: the best measured on multiview_dev (see ``fusion``), and
#: ``"gem"`` when the local features are not RootSIFT (VLAD's words are RootSIFT words).
DEFAULT_GLOBAL_DESCRIPTOR = "gem+vlad"
FALLBACK_GLOBAL_DESCRIPTOR = "gem"


def get_global_descriptor(name: str) -> GlobalDescriptor:
    """A ready descriptor instance by registered name (factories are called once per call)."""
    return GLOBAL_DESCRIPTORS.get(name)()


from localmatch.shortlist import vlad as _vlad  # noqa: E402,F401  (registers "vlad")

# GeM's module imports torch, so the descriptors with a CNN register themselves when first asked for.
GLOBAL_DESCRIPTORS.add_lazy("gem", "localmatch.shortlist.gem")
GLOBAL_DESCRIPTORS.add_lazy("gem+vlad", "localmatch.shortlist.fusion")
