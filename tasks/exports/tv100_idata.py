"""TV100 for PyCIL (github.com/G-U-N/PyCIL): the `iTV100` dataset class.

``tv100 export --kind pycil`` writes this file, unchanged, beside the exported folders
``train/<class>/<image>.jpg`` and ``test/<class>/<image>.jpg``. It needs numpy and
torchvision only. To use it, copy it into PyCIL's ``utils/`` folder and add to
``utils/data_manager.py``::

    from utils.tv100_idata import iTV100
    ...
    elif name == "tv100":
        return iTV100()

then run e.g. ``python main.py --config exps/icarl_tv100.json`` with ``"dataset": "tv100"``.
The images are read from the folder named by the ``TV100_PYCIL_ROOT`` environment variable,
else from the folder holding this file.

Labels are the TV100 class indices: a class folder ``007_The_Jade_Lantern`` is label 7,
whatever order ImageFolder lists the folders in.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from torchvision import datasets, transforms

#: The environment variable naming the export folder (``<root>/export/pycil``).
ROOT_ENV = "TV100_PYCIL_ROOT"


def split_images_labels(imgs: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """PyCIL's ``utils.toolkit.split_images_labels``: ImageFolder's ``(path, label)``
    pairs as an array of paths and an array of labels."""
    images = [path for path, _ in imgs]
    labels = [label for _, label in imgs]
    return np.array(images), np.array(labels)


def export_root() -> str:
    """The export folder: ``$TV100_PYCIL_ROOT``, else the folder holding this file."""
    return os.environ.get(ROOT_ENV) or os.path.dirname(os.path.abspath(__file__))


def load_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The image paths and class indices of ``<root>/<split>`` (an ImageFolder tree)."""
    dset = datasets.ImageFolder(os.path.join(root, split))
    index = np.array([int(name.split("_", 1)[0]) for name in dset.classes], dtype=np.int64)
    images, labels = split_images_labels(dset.imgs)
    return images, index[labels]


class iTV100:  # PyCIL's iData interface (utils/data.py), without importing PyCIL
    """TV100 as a PyCIL dataset: image paths (``use_path``) and ImageNet-style transforms.

    ``class_order`` is the identity (PyCIL's convention); with ``"shuffle": true`` PyCIL
    draws its own order from each seed (``class_orders.json`` lists them).
    """

    use_path = True
    train_trsf: list[Any] = [
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=63 / 255),
    ]
    test_trsf: list[Any] = [
        transforms.Resize(256),
        transforms.CenterCrop(224),
    ]
    common_trsf: list[Any] = [
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
    class_order: list[int] | None = None

    def __init__(self, root: str | None = None) -> None:
        self.root = root or export_root()

    def download_data(self) -> None:
        """Read the export (nothing is downloaded): sets ``train_data``, ``train_targets``,
        ``test_data``, ``test_targets`` and ``class_order``."""
        self.train_data, self.train_targets = load_split(self.root, "train")
        self.test_data, self.test_targets = load_split(self.root, "test")
        self.class_order = np.arange(len(np.unique(self.train_targets))).tolist()
