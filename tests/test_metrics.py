"""``rtseg.metrics`` against the official ``cityscapesscripts`` evaluator itself (run on PNGs written here)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rtseg.data.labels import train_to_label_ids
from rtseg.errors import RtsegError
from rtseg.metrics import CityscapesMetrics, format_table
from rtseg.metrics import label_space

SCORE_KEYS = ("class_iou", "class_iiou", "category_iou", "category_iiou")
MEAN_KEYS = {"miou": "averageScoreClasses", "miiou": "averageScoreInstClasses",
             "category_miou": "averageScoreCategories", "category_miiou": "averageScoreInstCategories"}
OFFICIAL_KEYS = {"class_iou": "classScores", "class_iiou": "classInstScores",
                 "category_iou": "categoryScores", "category_iiou": "categoryInstScores"}

# Ground truth drawn so that every official rule matters: ignored ids (0-6, 9, 10, 14-16, 18),
# wall (12) and terrain (22) never in the ground truth, bus (28) and train (31) without
# instances, motorcycle (32) only as a crowd region, caravan (29) / trailer (30) instances
# (not scored), and ids above 1000 of an ignored class (ego vehicle, 1) that must be skipped.
STUFF_IDS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23]
INSTANCE_LABELS = [24, 24, 25, 26, 26, 26, 27, 29, 30, 33, 1]
CROWD_LABELS = [24, 26, 32, 33]
# Predictions: every id but terrain and bus (so those two stay undefined), caravan/trailer on cars.
NOISE_IDS = [i for i in range(34) if i not in (22, 28)]


def make_pair(rng: np.random.Generator, height: int, width: int, instances: int = 14):
    """(prediction label ids uint8, ground-truth label ids uint8, ground-truth instance ids uint16)."""
    labels = np.empty((height, width), np.uint8)
    ys = np.sort(rng.choice(np.arange(1, height), 3, replace=False))
    xs = np.sort(rng.choice(np.arange(1, width), 4, replace=False))
    for y0, y1 in zip([0, *ys], [*ys, height]):
        for x0, x1 in zip([0, *xs], [*xs, width]):
            labels[y0:y1, x0:x1] = rng.choice(STUFF_IDS)
    instance_ids = labels.astype(np.uint16)  # official encoding: plain label id outside instances
    yy, xx = np.mgrid[:height, :width]
    for k in range(instances):
        label = int(rng.choice(INSTANCE_LABELS))
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = rng.integers(1, max(2, height // 4)), rng.integers(1, max(2, width // 4))
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        labels[mask] = label
        instance_ids[mask] = label * 1000 + k  # same ids in every image: instances are per image
    for _ in range(2):
        label = int(rng.choice(CROWD_LABELS))
        y0, x0 = rng.integers(0, height - 2), rng.integers(0, width - 2)
        region = (slice(y0, y0 + rng.integers(2, height // 3 + 3)), slice(x0, x0 + rng.integers(2, width // 3 + 3)))
        labels[region] = label
        instance_ids[region] = label  # crowd: the label id, no instance
    pred = np.roll(labels, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1)).copy()
    noise = rng.random((height, width)) < 0.15
    pred[noise] = rng.choice(NOISE_IDS, size=int(noise.sum()))
    cars = (labels == 26) & (rng.random((height, width)) < 0.3)
    pred[cars] = rng.choice([29, 30, 27], size=int(cars.sum()))
    return pred, labels, instance_ids


SIZES = [(64, 128), (64, 128), (37, 53), (80, 40), (64, 128)]


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(2024)
    return [make_pair(rng, h, w) for h, w in SIZES]


def write_cityscapes(root: Path, pairs, city: str = "frankfurt") -> tuple[list[str], list[str]]:
    """Writes the pairs under official names; returns (prediction files, gt labelIds files)."""
    gt_dir, pred_dir = root / "gtFine" / "val" / city, root / "pred" / city
    gt_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    preds, gts = [], []
    for i, (pred, labels, instance_ids) in enumerate(pairs):
        stem = f"{city}_000000_{i:06d}"
        Image.fromarray(labels).save(gt_dir / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(instance_ids).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
        Image.fromarray(pred).save(pred_dir / f"{stem}_leftImg8bit.png")
        preds.append(str(pred_dir / f"{stem}_leftImg8bit.png"))
        gts.append(str(gt_dir / f"{stem}_gtFine_labelIds.png"))
    return preds, gts




@pytest.fixture
def official(official_evaluator):
    return official_evaluator


def official_results(official, predictions: list[str], ground_truth: list[str]) -> dict:
    """``evaluateImgLists`` with the evaluator's own default arguments, quiet and writing nothing."""
    args = official.CArgs()
    for key, value in vars(official.args).items():
        setattr(args, key, value)
    args.quiet, args.JSONOutput, args.colorized = True, False, False
    return official.evaluateImgLists(predictions, ground_truth, args)


def assert_matches_official(ours: dict, theirs: dict, tolerance: float = 1e-6) -> None:
    for key, official_key in OFFICIAL_KEYS.items():
        for name, value in ours[key].items():
            reference = theirs[official_key][name]
            if math.isnan(reference):
                assert value is None, (key, name, value)
            else:
                assert value == pytest.approx(reference, abs=tolerance), (key, name)
        # every official score that is defined for an evaluated class/category is ours too
        defined = {n for n, v in theirs[official_key].items() if not math.isnan(v)}
        assert defined <= set(ours[key]), (key, defined - set(ours[key]))
    for key, official_key in MEAN_KEYS.items():
        reference = theirs[official_key]
        assert (ours[key] is None) if math.isnan(reference) else ours[key] == pytest.approx(reference, abs=tolerance)
    assert ours["confusion"] == theirs["confMatrix"]


def test_equals_official_evaluator(pairs, official, tmp_path):
    predictions, ground_truth = write_cityscapes(tmp_path, pairs)
    theirs = official_results(official, predictions, ground_truth)
    metrics = CityscapesMetrics()
    for pred, labels, instance_ids in pairs:
        metrics.update(torch.from_numpy(pred), torch.from_numpy(labels), torch.from_numpy(instance_ids))
    ours = metrics.compute()
    assert_matches_official(ours, theirs)
    # the data exercises what it claims to: undefined, zero and crowd-only scores exist
    assert ours["class_iou"]["terrain"] is None and ours["class_iou"]["bus"] is None
    assert ours["class_iou"]["wall"] == 0.0 and ours["class_iiou"]["train"] == 0.0
    assert ours["class_iou"]["motorcycle"] is not None and ours["class_iiou"]["motorcycle"] == 0.0
    assert 0 < ours["category_miiou"] < 1 and 0 < ours["miiou"] < 1


def test_batched_update_equals_per_image_and_official(official, tmp_path):
    rng = np.random.default_rng(7)
    batch = [make_pair(rng, 48, 96) for _ in range(3)]  # same instance ids in every image
    theirs = official_results(official, *write_cityscapes(tmp_path, batch))
    metrics = CityscapesMetrics()
    metrics.update(*(torch.from_numpy(np.stack(maps)) for maps in zip(*batch)))
    assert_matches_official(metrics.compute(), theirs)


def test_ignored_prediction_is_false_negative_and_void_gt_drops_out(official, tmp_path):
    # road pixels: predicted road, predicted 'unlabeled'; an 'unlabeled' pixel predicted road
    labels = np.array([[7, 7, 0, 26]], np.uint8)
    pred = np.array([[7, 0, 7, 29]], np.uint8)
    instance_ids = np.array([[7, 7, 0, 26001]], np.uint16)
    metrics = CityscapesMetrics()
    metrics.update(pred, labels, instance_ids)
    ours = metrics.compute()
    assert ours["class_iou"]["road"] == 0.5  # TP 1, FN 1 (ignored id predicted), FP 0 (void gt)
    assert ours["class_iou"]["car"] == 0.0 and ours["category_iou"]["vehicle"] == 0.0
    assert ours["category_iiou"]["vehicle"] == 1.0  # caravan predicted on a car: inside the category
    assert_matches_official(ours, official_results(official, *write_cityscapes(tmp_path, [(pred, labels, instance_ids)])))


def test_label_table_and_average_sizes_are_the_official_ones(official):
    from cityscapesscripts.helpers.labels import category2labels, labels

    assert label_space.AVERAGE_INSTANCE_SIZE == official.args.avgClassSize
    official_table = {(l.id, l.name, l.category, l.hasInstances, l.ignoreInEval) for l in labels if l.id >= 0}
    ours = {(c.id, c.name, c.category, c.has_instances, c.ignore_in_eval) for c in label_space.LABELS}
    assert ours == official_table
    assert set(label_space.CATEGORY_NAMES) == {c for c in category2labels if c != "void"}
    assert label_space.INSTANCE_CATEGORY_NAMES == ("human", "vehicle")
    assert set(label_space.INSTANCE_CATEGORY_IDS["vehicle"]) == {26, 27, 28, 29, 30, 31, 32, 33}


def test_input_types_give_the_same_scores(pairs):
    pred, labels, instance_ids = pairs[2]
    reference = CityscapesMetrics()
    reference.update(pred, labels, instance_ids)  # numpy uint8 / uint16
    expected = reference.compute()
    for convert in (lambda a: torch.from_numpy(a.astype(np.int64)), lambda a: torch.from_numpy(a.astype(np.int32)),
                    lambda a: torch.from_numpy(a).clone()):
        metrics = CityscapesMetrics()
        metrics.update(convert(pred), convert(labels), convert(instance_ids))
        assert metrics.compute() == expected
    transposed = CityscapesMetrics()  # non-contiguous views are fine (and a transpose keeps scores)
    transposed.update(torch.from_numpy(pred).T, torch.from_numpy(labels).T, torch.from_numpy(instance_ids.astype(np.int32)).T)
    assert transposed.compute()["class_iou"] == expected["class_iou"]


def test_train_id_predictions_convert_with_train_to_label_ids(pairs):
    _, labels, instance_ids = pairs[0]
    rng = np.random.default_rng(3)
    train_ids = rng.integers(0, 19, labels.shape).astype(np.uint8)
    train_ids[:4] = 255  # "ignore" predictions become 'unlabeled' (0): false negatives
    direct, converted = CityscapesMetrics(), CityscapesMetrics()
    label_ids = train_to_label_ids(torch.from_numpy(train_ids))
    converted.update(label_ids, labels, instance_ids)
    lookup = {c.train_id: c.id for c in label_space.LABELS if not c.ignore_in_eval} | {255: 0}
    direct.update(np.vectorize(lookup.get)(train_ids).astype(np.uint8), labels, instance_ids)
    assert converted.compute() == direct.compute()
    with pytest.raises(RtsegError, match="train_to_label_ids"):
        CityscapesMetrics().update(torch.from_numpy(train_ids), labels)  # 255 is no label id


def test_without_instance_ids_iiou_is_none(pairs):
    with_instances, without = CityscapesMetrics(), CityscapesMetrics()
    for pred, labels, instance_ids in pairs:
        with_instances.update(pred, labels, instance_ids)
        without.update(pred, labels)
    full, partial = with_instances.compute(), without.compute()
    assert partial["class_iou"] == full["class_iou"] and partial["miou"] == full["miou"]
    assert partial["miiou"] is None and partial["category_miiou"] is None
    assert set(partial["class_iiou"].values()) == {None} and set(partial["category_iiou"].values()) == {None}
    mixed = CityscapesMetrics()  # some images without instances: iIoU would cover a subset, so None
    mixed.update(*pairs[0])
    mixed.update(*pairs[1][:2])
    assert mixed.compute()["miiou"] is None


@pytest.mark.parametrize("pred, gt, instances, message", [
    (np.full((4, 5), 34, np.uint8), np.zeros((4, 5), np.uint8), None, "prediction holds id 34"),
    (np.full((4, 5), -1, np.int64), np.zeros((4, 5), np.int64), None, "prediction holds id -1"),
    (np.zeros((4, 5), np.uint8), np.full((4, 5), 40, np.uint8), None, "ground truth holds id 40"),
    (np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8), np.full((4, 5), 34000, np.uint16), "instance id 34000"),
    (np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8), None, "differs from ground truth shape"),
    (np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint16), "instance-id shape"),
    (np.zeros((4, 5), np.float32), np.zeros((4, 5), np.uint8), None, "integer label ids"),
    (np.zeros((2, 2, 4, 5), np.uint8), np.zeros((2, 2, 4, 5), np.uint8), None, r"\[H, W\] or \[N, H, W\]"),
])
def test_bad_input_is_refused_with_its_value(pred, gt, instances, message):
    metrics = CityscapesMetrics()
    with pytest.raises(RtsegError, match=message):
        metrics.update(pred, gt, instances)
    assert int(metrics.images) == 0  # nothing half-counted


def test_state_is_additive_and_reset_clears(pairs):
    whole, first, second = CityscapesMetrics(), CityscapesMetrics(), CityscapesMetrics()
    for i, pair in enumerate(pairs):
        whole.update(*pair)
        (first if i % 2 else second).update(*pair)
    first.add_state({k: v.numpy() for k, v in second.state().items()})
    assert first.compute() == whole.compute()
    whole.reset()
    empty = whole.compute()
    assert empty["miou"] is None and empty["category_miiou"] is None and not any(map(any, empty["confusion"]))


def _all_reduce_worker(rank: int, world_size: int, folder: str, pairs) -> None:
    import json

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world_size)
    try:
        metrics = CityscapesMetrics()
        for pair in pairs[rank::world_size]:
            metrics.update(*pair)
        Path(folder, f"rank{rank}.json").write_text(json.dumps(metrics.all_reduce().compute()))
        with pytest.raises(RuntimeError, match="twice"):
            metrics.all_reduce()
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_over_ranks(pairs, tmp_path):
    import json

    import torch.multiprocessing as mp

    # fork: the children reuse this process's imports (spawn would re-import torch, ~10 s here)
    mp.start_processes(_all_reduce_worker, args=(2, str(tmp_path), pairs), nprocs=2, start_method="fork")
    single = CityscapesMetrics()
    for pair in pairs:
        single.update(*pair)
    expected = single.compute()
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["confusion"] == expected["confusion"]
        for key in (*SCORE_KEYS, *MEAN_KEYS):
            assert result[key] == pytest.approx(expected[key], abs=1e-12)


def test_all_reduce_without_process_group_is_a_no_op(pairs):
    metrics = CityscapesMetrics()
    metrics.update(*pairs[0])
    before = metrics.compute()
    assert metrics.all_reduce() is metrics and metrics.compute() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu(pairs):
    cpu, cuda = CityscapesMetrics(), CityscapesMetrics()
    for pred, labels, instance_ids in pairs:
        cpu.update(pred, labels, instance_ids)
        cuda.update(*(torch.from_numpy(a).cuda() for a in (pred, labels, instance_ids)))
    assert cuda.device.type == "cuda"
    ours, expected = cuda.compute(), cpu.compute()
    assert ours["confusion"] == expected["confusion"]
    for key in (*SCORE_KEYS, *MEAN_KEYS):
        assert ours[key] == pytest.approx(expected[key], abs=1e-12)


def test_format_table_shows_every_score(pairs):
    metrics = CityscapesMetrics()
    for pair in pairs:
        metrics.update(*pair)
    results = metrics.compute()
    table = format_table(results)
    lines = {line.split("  ")[0].strip(): line for line in table.splitlines() if line.strip()}
    assert lines["class IoU"].split()[-1] == f"{100 * results['miou']:.1f}"
    assert lines["category iIoU"].split()[-1] == f"{100 * results['category_miiou']:.1f}"
    for name, value in results["class_iou"].items():
        row = next(line for line in table.splitlines() if line.startswith(f"{name} ") and "IoU" not in line)
        iou, iiou = row[len(name):].split()
        assert iou == ("-" if value is None else f"{100 * value:.1f}")
        expected_iiou = results["class_iiou"][name]
        assert iiou == ("-" if expected_iiou is None else f"{100 * expected_iiou:.1f}")
    assert "terrain" in table and "vehicle" in table
