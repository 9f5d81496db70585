"""Finding the data: the data folder, its splits and classes, and the image files in them.

Layout: ``root/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (PNG and DICOM files are read too; an
optional ``root/val/`` is used as the validation split when present). Label 0 is NORMAL, label 1
is PNEUMONIA.
"""
import os
from pathlib import Path

import numpy as np

from fast.data.dicom import DICOM_EXTENSION, is_dicom
from fast.data.errors import DataError
from fast.files import written_by_project

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")
DEFAULT_DATA = "data/chest_xray"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", DICOM_EXTENSION)
OVERLAY_SUFFIX = ".saliency.png"  # how ``fast.predict --saliency`` names its overlays

_DATA_SOURCE = (
    "The data set is Kermany et al. (2018), \"Labeled Optical Coherence Tomography (OCT) and "
    "Chest X-Ray Images for Classification\", Mendeley Data, doi:10.17632/rscbjbr9sj (the same "
    "images as the Kaggle data set \"Chest X-Ray Images (Pneumonia)\"). Download it, then pass "
    "--data PATH, set XRAY_DATA=PATH, or put it at data/chest_xray; the folder must hold train/ "
    "and test/, each with NORMAL/ and PNEUMONIA/ inside."
)


def resolve_data_root(data=None):
    """Data folder: ``data`` if given, else ``$XRAY_DATA``, else ``DEFAULT_DATA`` (from the cwd).

    Raises DataError naming the path tried and where the data comes from.
    """
    if data is not None:
        root, how = Path(data).expanduser(), "given explicitly"
    elif os.environ.get("XRAY_DATA"):
        root, how = Path(os.environ["XRAY_DATA"]).expanduser(), "from $XRAY_DATA"
    else:
        root, how = Path(DEFAULT_DATA), f"the default, relative to {Path.cwd()}"
    if not root.is_dir():
        raise DataError(f"chest X-ray data folder not found: tried {root} ({how}).\n{_DATA_SOURCE}")
    return root


def _find_class_dir(split_dir, class_name):
    """The subfolder of ``split_dir`` named ``class_name`` in any letter case."""
    matches = [p for p in split_dir.iterdir() if p.is_dir() and p.name.upper() == class_name]
    if not matches:
        raise DataError(f"class folder {split_dir / class_name} not found "
                        f"(looked for a folder named {class_name}, any case, in {split_dir})")
    if len(matches) > 1:
        names = ", ".join(sorted(p.name for p in matches))
        raise DataError(f"{split_dir} holds several {class_name} folders ({names}); keep one")
    return matches[0]


def is_image_file(path):
    """Whether the pipeline reads ``path`` as an image: a file named with an IMAGE_EXTENSIONS
    suffix (any case), or any other file that is DICOM by content; hidden files (names
    starting with '.', e.g. macOS '._x.jpeg' forks) are not, nor are the pictures this project
    draws: named as its Grad-CAM overlays are (``OVERLAY_SUFFIX``), or marked as its own
    (``fast.files.written_by_project``), whatever they are named now."""
    path = Path(path)
    if path.name.startswith(".") or not path.is_file() or path.name.lower().endswith(OVERLAY_SUFFIX):
        return False
    if path.suffix.lower() == ".png" and written_by_project(path):
        return False
    return path.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(path)


def find_images(folder):
    """Every image file (``is_image_file``) under ``folder``, sub-folders included, sorted by
    path; hidden folders are skipped."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder).parts
        if not any(part.startswith(".") for part in relative[:-1]) and is_image_file(path):
            found.append(path)
    return found


def list_split(root, split):
    """Image paths and labels of ``root/split``: NORMAL files first, each class sorted by name.

    Images are the files named with an IMAGE_EXTENSIONS suffix, and the other files that are
    DICOM by content (DICOM files are often named by a UID, or have no suffix). Hidden files
    (names starting with '.', e.g. macOS '._x.jpeg' forks) are ignored.
    Returns (paths: list[Path], labels: (N,) int64).
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(f"split folder {split_dir} not found (expected {split}/ inside {root})")
    paths, labels = [], []
    for label, class_name in enumerate(CLASS_NAMES):
        class_dir = _find_class_dir(split_dir, class_name)
        files = sorted((p for p in class_dir.iterdir() if is_image_file(p)), key=lambda p: p.name)
        if not files:
            raise DataError(f"class folder {class_dir} holds no images (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)}, any case, and DICOM content)")
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)
