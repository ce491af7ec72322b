"""The official evaluator's view of the Cityscapes label table, as lookup tensors.

Everything here is derived from ``rtseg.data.labels`` (torchvision's copy of the official
table, checked against ``cityscapesscripts`` by the tests), except ``AVERAGE_INSTANCE_SIZE``:
the evaluator's ``args.avgClassSize`` lives inside its script, whose import has side effects
(it reads and validates ``CITYSCAPES_*`` environment variables) and whose package is only a
test dependency, so the ten numbers are copied from cityscapesScripts 2.x
(``evaluation/evalPixelLevelSemanticLabeling.py``) and a test asserts they equal the
installed package's values exactly.
"""

from __future__ import annotations

import torch

from rtseg.data.labels import LABELS, NUM_LABEL_IDS

# Mean instance size in pixels per class over the training set (official ``avgClassSize``).
AVERAGE_INSTANCE_SIZE = {
    "bicycle": 4672.3249222261,
    "caravan": 36771.8241758242,
    "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "car": 12794.0202738185,
    "person": 3462.4756337644,
    "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}

# Instance ids are label_id * 1000 + k; ids up to 1000 are plain label ids (crowd or stuff).
INSTANCE_ID_FACTOR = 1000

# Label ids the evaluator scores (19) and, for each, its name; in label-id order as the official.
EVALUATED_IDS = tuple(c.id for c in LABELS if not c.ignore_in_eval)
EVALUATED_NAMES = tuple(c.name for c in LABELS if not c.ignore_in_eval)
# Classes whose instances are scored (iIoU): evaluated and with instances.
INSTANCE_IDS = tuple(c.id for c in LABELS if c.has_instances and not c.ignore_in_eval)
# Categories in official order (``void`` has no evaluated class, so it never gets a score).
CATEGORY_NAMES = tuple(dict.fromkeys(c.category for c in LABELS if not c.ignore_in_eval))
# Category IoU merges the evaluated classes of a category.
CATEGORY_EVALUATED_IDS = {
    cat: tuple(c.id for c in LABELS if c.category == cat and not c.ignore_in_eval) for cat in CATEGORY_NAMES
}
# Category iIoU exists for categories whose labels (id >= 0) all have instances (human,
# vehicle); it counts every label of the category, so caravan and trailer predictions on a
# car are category true positives and, on an evaluated non-vehicle pixel, false positives.
INSTANCE_CATEGORY_NAMES = tuple(
    cat for cat in CATEGORY_NAMES if all(c.has_instances for c in LABELS if c.category == cat)
)
INSTANCE_CATEGORY_IDS = {cat: tuple(c.id for c in LABELS if c.category == cat) for cat in INSTANCE_CATEGORY_NAMES}


# Largest instance id the evaluator understands: label 33, instance 999 (it maps any id > 1000
# to label id // 1000 and fails on an unknown label).
MAX_INSTANCE_ID = NUM_LABEL_IDS * INSTANCE_ID_FACTOR - 1


def _instance_rows() -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per instance id of the instance-class range (24000..33999) its class, label, category, weight numerator.

    Ids are scored when above 1000 with ``id // 1000`` an evaluated class with instances (the
    official ``instanceNp > 1000`` and ``ignoreInEval`` checks): caravan and trailer ids are
    not. One extra last row stands for every id outside the range (label -1: never a class
    hit). Unscored rows, the extra one included, have class index ``len(INSTANCE_IDS)`` (a
    dump slot) and weight 0, so whatever they count adds nothing.
    """
    start = min(INSTANCE_IDS) * INSTANCE_ID_FACTOR
    ids = torch.arange(start, (max(INSTANCE_IDS) + 1) * INSTANCE_ID_FACTOR)
    label = ids // INSTANCE_ID_FACTOR
    class_index = torch.full((NUM_LABEL_IDS,), len(INSTANCE_IDS), dtype=torch.int64)
    average_size = torch.zeros(NUM_LABEL_IDS, dtype=torch.float64)
    for k, c in enumerate(c for c in LABELS if c.id in INSTANCE_IDS):
        class_index[c.id] = k
        average_size[c.id] = AVERAGE_INSTANCE_SIZE[c.name]
    scored = (ids > INSTANCE_ID_FACTOR) & (class_index[label] < len(INSTANCE_IDS))
    row_class = torch.where(scored, class_index[label], len(INSTANCE_IDS))
    row_average_size = torch.where(scored, average_size[label], 0.0)
    row_category = CATEGORY_INDEX_BY_ID[label]
    outside = torch.tensor([-1])
    return (start, torch.cat([row_class, torch.tensor([len(INSTANCE_IDS)])]), torch.cat([label, outside]),
            torch.cat([row_category, outside]), torch.cat([row_average_size, torch.tensor([0.0], dtype=torch.float64)]))


# label id -> index into INSTANCE_CATEGORY_NAMES (-1 outside them): a category hit is equality.
CATEGORY_INDEX_BY_ID = torch.full((NUM_LABEL_IDS,), -1, dtype=torch.int64)
for _k, _cat in enumerate(INSTANCE_CATEGORY_NAMES):
    CATEGORY_INDEX_BY_ID[list(INSTANCE_CATEGORY_IDS[_cat])] = _k
(INSTANCE_ROWS_START, INSTANCE_ROW_CLASS, INSTANCE_ROW_LABEL, INSTANCE_ROW_CATEGORY,
 INSTANCE_ROW_AVERAGE_SIZE) = _instance_rows()

__all__ = [
    "AVERAGE_INSTANCE_SIZE", "INSTANCE_ID_FACTOR", "MAX_INSTANCE_ID", "NUM_LABEL_IDS", "EVALUATED_IDS",
    "EVALUATED_NAMES", "INSTANCE_IDS", "CATEGORY_NAMES", "CATEGORY_EVALUATED_IDS", "INSTANCE_CATEGORY_NAMES",
    "INSTANCE_CATEGORY_IDS", "INSTANCE_ROWS_START", "INSTANCE_ROW_CLASS", "INSTANCE_ROW_LABEL",
    "INSTANCE_ROW_CATEGORY", "INSTANCE_ROW_AVERAGE_SIZE", "CATEGORY_INDEX_BY_ID",
]
