"""The Cityscapes label table, taken from torchvision (no hand-typed copy), and lookups on it.

Label ids (0..33) are what the official files and the test server use; train ids (0..18,
255 = ignore) are what the networks predict. Lookup tables are numpy arrays indexed by id
so whole label maps convert in one vectorised step.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.datasets import Cityscapes

IGNORE_INDEX = 255
NUM_LABEL_IDS = 34  # label ids 0..33; license plate (-1) never appears in label maps
# The 33 official classes with a non-negative id, in id order.
LABELS = tuple(c for c in Cityscapes.classes if c.id >= 0)
# The 19 evaluated classes, in train-id order.
EVAL_CLASSES = tuple(sorted((c for c in LABELS if not c.ignore_in_eval), key=lambda c: c.train_id))
NUM_CLASSES = len(EVAL_CLASSES)
CLASS_NAMES = tuple(c.name for c in EVAL_CLASSES)
# Categories in official order, and those with instances (category iIoU exists for these).
CATEGORY_NAMES = tuple(dict.fromkeys(c.category for c in LABELS if c.category != "void"))
INSTANCE_CLASS_NAMES = tuple(c.name for c in EVAL_CLASSES if c.has_instances)

# id -> train id (255 for ignored ids)
LABEL_TO_TRAIN = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _c in LABELS:
    if not _c.ignore_in_eval:
        LABEL_TO_TRAIN[_c.id] = _c.train_id
# train id -> label id (255 maps to 0, "unlabeled")
TRAIN_TO_LABEL = np.zeros(256, dtype=np.uint8)
for _c in EVAL_CLASSES:
    TRAIN_TO_LABEL[_c.train_id] = _c.id
# train id -> RGB colour (255 -> black)
TRAIN_COLORS = np.zeros((256, 3), dtype=np.uint8)
for _c in EVAL_CLASSES:
    TRAIN_COLORS[_c.train_id] = _c.color
# label id -> RGB colour
LABEL_COLORS = np.zeros((256, 3), dtype=np.uint8)
for _c in LABELS:
    LABEL_COLORS[_c.id] = _c.color
LABEL_BY_NAME = {c.name: c for c in LABELS}


def label_to_train_ids(label_ids: np.ndarray | torch.Tensor):
    """Official label ids -> train ids (ignored ids -> 255). Works on numpy arrays and tensors."""
    if isinstance(label_ids, torch.Tensor):
        table = torch.from_numpy(LABEL_TO_TRAIN).to(label_ids.device)
        return table[label_ids.long()]
    return LABEL_TO_TRAIN[label_ids]


def train_to_label_ids(train_ids: np.ndarray | torch.Tensor):
    """Train ids -> official label ids (what the test server and the evaluator read)."""
    if isinstance(train_ids, torch.Tensor):
        table = torch.from_numpy(TRAIN_TO_LABEL).to(train_ids.device)
        return table[train_ids.long()]
    return TRAIN_TO_LABEL[train_ids]


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """HxW train ids -> HxWx3 uint8 in the Cityscapes colours."""
    return TRAIN_COLORS[np.asarray(train_ids, dtype=np.uint8)]


def overlay(image: np.ndarray, train_ids: np.ndarray, alpha: float = 0.5, palette: np.ndarray | None = None
            ) -> np.ndarray:
    """``HxWx3`` uint8 image blended with the colour of each pixel's class (``alpha``: the colour's
    share); ``palette``: ``256x3`` colours per class id (``DatasetInfo.palette()``), Cityscapes' by default."""
    colours = (colorize(train_ids) if palette is None else palette[np.asarray(train_ids, np.uint8)]).astype(np.float32)
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)
