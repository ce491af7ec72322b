"""Class IoU, class iIoU, category IoU and category iIoU exactly as the official Cityscapes evaluator.

The official ``cityscapesscripts`` evaluator (``evalPixelLevelSemanticLabeling.py``) is the
reference; this module follows each of its rules, in label-id space (0..33):

* one 34x34 confusion matrix (rows: ground truth, columns: prediction) over the whole set;
* IoU = TP / (TP + FP + FN). FN is the whole ground-truth row minus TP, so predicting an
  ignored id on an evaluated pixel is a false negative; FP only comes from rows of evaluated
  classes, so anything predicted on ignored ground truth is not counted;
* iIoU, for person, rider, car, truck, bus, train, motorcycle and bicycle: every instance
  (instance id > 1000, label = id // 1000, per image) adds its TP and FN weighted by
  ``avgClassSize[class] / instance size``; FP is the unweighted IoU one. Crowd regions (an
  instance map holding the plain label id) count in IoU but are no instance;
* category IoU merges the evaluated classes of a category; category iIoU exists for human
  and vehicle, where any id of the category, caravan and trailer included, is a hit;
* a score whose denominator is 0 is undefined (NaN officially, ``None`` here) and means skip it.

Why hand-written: the official evaluator loops in Python over instances (one full-image mask
per instance) and is CPU/numpy only; torchmetrics' ``JaccardIndex`` has neither the
ignored-prediction rule nor iIoU. Here an image costs a few narrow full-image passes (byte
comparisons of neighbouring pixels and one ``nonzero``): label maps are piecewise constant, so
the image is cut into runs of equal (prediction, ground truth, instance) and all counting is
done on the runs, typically 1-5 % of the pixels. It runs on whatever device the tensors live
on, and the state is a few tensors that ``torch.distributed`` can sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rtseg.errors import RtsegError
from rtseg.metrics import label_space as ls
from rtseg.metrics.state import AdditiveState, as_batches, mean_defined, ratio

_NUM_IDS = ls.NUM_LABEL_IDS
_NUM_INSTANCE_CLASSES = len(ls.INSTANCE_IDS)
# State: name -> (shape, dtype). Counts are int64 (exact), weighted sums float64 (as the official).
_STATE = {
    "confusion": ((_NUM_IDS, _NUM_IDS), torch.int64),
    "instance_tp_weighted": ((_NUM_INSTANCE_CLASSES,), torch.float64),
    "instance_fn_weighted": ((_NUM_INSTANCE_CLASSES,), torch.float64),
    "category_tp_weighted": ((_NUM_INSTANCE_CLASSES,), torch.float64),
    "category_fn_weighted": ((_NUM_INSTANCE_CLASSES,), torch.float64),
    "images": ((), torch.int64),
    "images_without_instances": ((), torch.int64),
}


class CityscapesMetrics(AdditiveState):
    """Accumulates predictions and ground truth (label ids) and scores them as the official evaluator.

    ``update`` takes ``[N, H, W]`` or ``[H, W]`` integer tensors (or numpy arrays) of label ids
    0..33; convert train-id predictions first with ``rtseg.data.labels.train_to_label_ids``.
    Without ``gt_instance_ids`` the iIoU scores are ``None``. In distributed evaluation every
    rank updates with its share, then calls ``all_reduce()`` once before ``compute()``.
    """

    def __init__(self, device: torch.device | str | None = None):
        self._tables_device: torch.device | None = None
        super().__init__(device)

    def spec(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return _STATE

    def _tables(self) -> dict[str, torch.Tensor]:
        if self._tables_device != self.device:
            tables = {
                "row_class": ls.INSTANCE_ROW_CLASS,
                "row_label": ls.INSTANCE_ROW_LABEL,
                "row_category": ls.INSTANCE_ROW_CATEGORY,
                "row_average_size": ls.INSTANCE_ROW_AVERAGE_SIZE,
                "category_by_id": ls.CATEGORY_INDEX_BY_ID,
            }
            self._table_cache = {k: v.to(self.device) for k, v in tables.items()}
            self._tables_device = self.device
        return self._table_cache

    # ---------------------------------------------------------------- update
    @torch.no_grad()
    def update(self, pred_label_ids, gt_label_ids, gt_instance_ids=None) -> None:
        pred, gt, instances = as_batches(pred_label_ids, gt_label_ids, gt_instance_ids)
        self._follow(pred)
        pred, gt = pred.to(self.device), gt.to(self.device)
        instances = instances.to(self.device) if instances is not None else None
        for n in range(pred.shape[0]):
            self._update_image(pred[n], gt[n], instances[n] if instances is not None else None)

    def _update_image(self, pred: torch.Tensor, gt: torch.Tensor, instances: torch.Tensor | None) -> None:
        maps = [pred, gt] if instances is None else [pred, gt, instances]
        maps = [m.reshape(-1) for m in maps]
        # uint16 (16-bit PNG instance maps) has few kernels, on CUDA especially: work on the
        # same bits as int16 and restore the unsigned value on the few gathered run values.
        unsigned16 = [m.dtype == torch.uint16 for m in maps]
        maps = [m.view(torch.int16) if u else m.to(torch.int64) if m.dtype in _WIDE_UNSIGNED else m
                for m, u in zip(maps, unsigned16)]
        starts, lengths = _runs(maps)
        run_values = [m.index_select(0, starts).to(torch.int64) for m in maps]
        run_values = [v & 0xFFFF if u else v for v, u in zip(run_values, unsigned16)]
        pred_ids, gt_ids = run_values[0], run_values[1]
        instance_ids = run_values[2] if instances is not None else None
        # Every value of a map starts some run, so checking the run values checks every pixel.
        _check_ids(pred_ids, gt_ids, instance_ids)

        pairs = torch.bincount(gt_ids * _NUM_IDS + pred_ids, weights=lengths.to(torch.float64),
                               minlength=_NUM_IDS * _NUM_IDS)  # float64 counts: exact below 2**53
        self.confusion += pairs.to(torch.int64).view(_NUM_IDS, _NUM_IDS)
        self.images += 1
        if instance_ids is None:
            self.images_without_instances += 1
        else:
            self._update_instances(pred_ids, instance_ids, lengths)

    def _update_instances(self, pred_ids: torch.Tensor, instance_ids: torch.Tensor, lengths: torch.Tensor) -> None:
        """Adds one image's instances from its runs: size, TP and category TP per instance id.

        Ids of the instance-class range (24000..33999) index rows, every other id (stuff, crowd,
        anything below) the last row; rows that are not scored (caravan, trailer, the last row)
        have weight 0 and land in the dump class slot.
        """
        tables = self._tables()
        outside = len(tables["row_class"]) - 1
        rows = instance_ids - ls.INSTANCE_ROWS_START
        rows = torch.where((rows >= 0) & (rows < outside), rows, outside)
        lengths = lengths.to(torch.float64)
        class_hit = pred_ids == tables["row_label"][rows]
        category_hit = tables["category_by_id"][pred_ids] == tables["row_category"][rows]

        def per_row(weights: torch.Tensor) -> torch.Tensor:  # float64 sums of pixel counts: exact
            return torch.bincount(rows, weights=weights, minlength=outside + 1)

        size, tp, category_tp = per_row(lengths), per_row(lengths * class_hit), per_row(lengths * category_hit)
        # weight = avgClassSize / size; 0 for rows without pixels or not scored (size clamped: no 0/0)
        weight = tables["row_average_size"] / size.clamp(min=1)
        weighted = torch.stack([tp, size - tp, category_tp, size - category_tp]) * weight
        sums = torch.zeros(4, _NUM_INSTANCE_CLASSES + 1, dtype=torch.float64, device=self.device)
        sums.index_add_(1, tables["row_class"], weighted)
        for k, name in enumerate(("instance_tp_weighted", "instance_fn_weighted",
                                  "category_tp_weighted", "category_fn_weighted")):
            getattr(self, name).add_(sums[k, :_NUM_INSTANCE_CLASSES])

    # --------------------------------------------------------------- compute
    def compute(self) -> dict[str, Any]:
        """The four scores (fractions, ``None`` when undefined), per-class and per-category dicts, confusion."""
        confusion = self.confusion.cpu().numpy()
        with_instances = int(self.images_without_instances) == 0 and int(self.images) > 0
        tp_w, fn_w, cat_tp_w, cat_fn_w = (
            getattr(self, n).cpu().numpy()
            for n in ("instance_tp_weighted", "instance_fn_weighted", "category_tp_weighted", "category_fn_weighted")
        )

        evaluated = list(ls.EVALUATED_IDS)
        class_iou, class_iiou = {}, {}
        for label_id, name in zip(ls.EVALUATED_IDS, ls.EVALUATED_NAMES):
            tp = int(confusion[label_id, label_id])
            fn = int(confusion[label_id, :].sum()) - tp
            fp = int(confusion[evaluated, label_id].sum()) - tp
            class_iou[name] = ratio(tp, tp + fp + fn)
            class_iiou[name] = None
            if with_instances and label_id in ls.INSTANCE_IDS:
                k = ls.INSTANCE_IDS.index(label_id)
                class_iiou[name] = ratio(tp_w[k], tp_w[k] + fp + fn_w[k])

        category_iou, category_iiou = {}, {}
        for category in ls.CATEGORY_NAMES:
            ids = list(ls.CATEGORY_EVALUATED_IDS[category])
            other_rows = [i for i in evaluated if i not in ids]
            tp = int(confusion[np.ix_(ids, ids)].sum())
            fn = int(confusion[ids, :].sum()) - tp
            fp = int(confusion[np.ix_(other_rows, ids)].sum())
            category_iou[category] = ratio(tp, tp + fp + fn)
            category_iiou[category] = None
            if with_instances and category in ls.INSTANCE_CATEGORY_NAMES:
                all_ids = list(ls.INSTANCE_CATEGORY_IDS[category])
                members = [k for k, i in enumerate(ls.INSTANCE_IDS) if i in all_ids]
                fp = int(confusion[np.ix_(other_rows, all_ids)].sum())
                tp_c, fn_c = float(cat_tp_w[members].sum()), float(cat_fn_w[members].sum())
                category_iiou[category] = ratio(tp_c, tp_c + fp + fn_c)

        return {
            "miou": mean_defined(class_iou.values()),
            "miiou": mean_defined(class_iiou.values()),
            "category_miou": mean_defined(category_iou.values()),
            "category_miiou": mean_defined(category_iiou.values()),
            "class_iou": class_iou,
            "class_iiou": class_iiou,
            "category_iou": category_iou,
            "category_iiou": category_iiou,
            "confusion": confusion.tolist(),
        }


_WIDE_UNSIGNED = (torch.uint32, torch.uint64)


def _mark_changes(values: torch.Tensor, changed: torch.Tensor, first: bool) -> None:
    """Sets ``changed[j]`` (j >= 1) where ``values[j] != values[j - 1]``; ``first`` overwrites, else ORs.

    Wider than a byte, XOR then ``bool()``: PyTorch's CPU kernels vectorise these but not
    16/32-bit comparisons, which take several times longer on a full-size image.
    """
    target = changed[1:]
    if values.element_size() == 1:
        if first:
            torch.ne(values[1:], values[:-1], out=target)
            return
        differ = values[1:] != values[:-1]
    else:
        differ = (values[1:] ^ values[:-1]).bool()
    if first:
        target.copy_(differ)
    else:
        target |= differ


def _runs(maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Start index and length of each run of pixels on which every map is constant."""
    changed = torch.empty(maps[0].numel(), dtype=torch.bool, device=maps[0].device)
    changed[0] = True
    for k, values in enumerate(maps):
        _mark_changes(values, changed, first=k == 0)
    if changed.device.type == "cpu":
        # numpy's nonzero skips zero words with SIMD: about 4x faster than torch's on CPU here.
        starts = torch.from_numpy(np.flatnonzero(changed.numpy()))
    else:
        starts = torch.nonzero(changed).view(-1)
    end = torch.tensor([changed.numel()], dtype=starts.dtype, device=starts.device)
    return starts, torch.diff(starts, append=end)


def _check_ids(pred: torch.Tensor, gt: torch.Tensor, instances: torch.Tensor | None) -> None:
    """Ids out of range would corrupt the histogram keys; the official evaluator refuses them too."""
    extremes = [*torch.aminmax(pred), *torch.aminmax(gt)]
    if instances is not None:
        extremes += torch.aminmax(instances)
    values = torch.stack(extremes).tolist()  # one device sync
    for what, low, high in (("prediction", values[0], values[1]), ("ground truth", values[2], values[3])):
        if low < 0 or high >= _NUM_IDS:
            bad = low if low < 0 else high
            raise RtsegError(f"{what} holds id {bad}, not a Cityscapes label id (0..{_NUM_IDS - 1}); "
                             f"train-id maps convert with rtseg.data.labels.train_to_label_ids")
    if instances is not None and (values[4] < 0 or values[5] > ls.MAX_INSTANCE_ID):
        bad = values[4] if values[4] < 0 else values[5]
        raise RtsegError(f"ground-truth instance id {bad} is not a Cityscapes instance id "
                         f"(label id * 1000 + index, 0..{ls.MAX_INSTANCE_ID})")
