"""Makes ``astronaut_rotated.heic``, the HEIF test file (run once; needs pillow-heif, which can encode):
a 256 x 200 crop of scikit-image's astronaut photograph (NASA, public domain), stored with EXIF orientation 6
(display rotated 90 degrees clockwise), which pillow-heif writes as HEIF's own rotation.

    pip install pillow-heif && python tests/data/make_heic.py
"""

from pathlib import Path

import numpy as np
import PIL.Image
import pillow_heif
import skimage.data

CROP = (slice(0, 256), slice(100, 300))  # rows, columns: 256 x 200, the face and the flag


def main() -> None:
    pillow_heif.register_heif_opener()
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    crop = np.ascontiguousarray(skimage.data.astronaut()[CROP])
    PIL.Image.fromarray(crop).save(Path(__file__).with_name("astronaut_rotated.heic"), quality=85,
                                   exif=exif.tobytes())


if __name__ == "__main__":
    main()
