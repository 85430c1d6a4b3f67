"""Small dataset roots in the official formats, built from the annotation files in ``tests/fixtures/``."""

import shutil
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

PASCAL_ANNOTATIONS = Path(__file__).parent / "fixtures" / "pascal_part" / "Annotations_Part"


def pascal_root(root: Path) -> Path:
    """A Pascal-Part root: the fixture annotation files and one JPEG per file, the size of its masks, white where
    any object is and black elsewhere."""
    shutil.copytree(PASCAL_ANNOTATIONS, root / "Annotations_Part")
    images = root / "JPEGImages"
    images.mkdir(parents=True)
    for path in sorted(PASCAL_ANNOTATIONS.glob("*.mat")):
        objects = scipy.io.loadmat(path)["anno"][0, 0]["objects"].ravel()
        union = np.any([obj["mask"] > 0 for obj in objects], axis=0)
        Image.fromarray(np.repeat(union[..., None] * 255, 3, axis=2).astype(np.uint8)).save(
            images / f"{path.stem}.jpg", quality=95)
    return root
