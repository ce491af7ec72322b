"""The engine's parts: sampling order, seeded augmentation, RNG capture, checkpoints, logs, outputs
(the loss terms: tests/test_losses.py)."""

from __future__ import annotations

import random
import zipfile

import numpy as np
import pytest
import torch

from rtseg import checkpoint as ckpt
from rtseg.training.logs import CsvLog, read_csv
from rtseg.training.sampling import SeededDataset, SeededSampler
from rtseg.errors import RtsegError


def _batches(sampler: SeededSampler, batch: int) -> list[list[tuple[int, int]]]:
    items = list(sampler)
    return [items[i:i + batch] for i in range(0, len(items) - batch + 1, batch)]


def test_two_ranks_see_the_images_of_one_process_step_by_step():
    data = range(22)
    single = SeededSampler(data, seed=7)
    ranks = [SeededSampler(data, seed=7, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 3):
        for s in [single, *ranks]:
            s.set_epoch(epoch)
        one = _batches(single, 4)
        two = [_batches(r, 2) for r in ranks]
        assert len(one) == len(two[0]) == len(two[1]) == 5
        for k in range(5):
            # same images and the same per-image seeds, whichever rank loads them
            assert sorted(one[k]) == sorted(two[0][k] + two[1][k])
    single.set_epoch(0)
    first = [i for i, _ in single]
    single.set_epoch(1)
    assert [i for i, _ in single] != first  # reshuffled every epoch


def test_skipping_resumes_the_epoch_where_it_stopped():
    sampler = SeededSampler(range(10), seed=1)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, skip=6)
    assert list(sampler) == whole[6:] and len(sampler) == 4


class _RandomItems:
    """An item is random numbers from every generator the transforms might use."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.rand(3), np.random.rand(), random.random()


def test_seeded_items_do_not_depend_on_or_disturb_the_global_generators():
    dataset = SeededDataset(_RandomItems())
    torch.manual_seed(0)
    first = dataset[(2, 99)]
    state = torch.get_rng_state()
    torch.rand(5), np.random.rand(3), random.random()  # whatever ran before
    second = dataset[(2, 99)]
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
    assert not torch.equal(dataset[(2, 100)][0], first[0])
    torch.set_rng_state(state)
    expected = torch.rand(2)
    torch.set_rng_state(state)
    dataset[(1, 5)]
    assert torch.equal(torch.rand(2), expected)  # the global stream continues untouched


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    ckpt.save_atomic({"rng": ckpt.capture_rng_state()}, tmp_path / "rng.pt")
    expected = torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)]
    torch.rand(10), np.random.rand(10), random.random()
    ckpt.restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    again = torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)]
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "last.pt"
    ckpt.save_atomic({"step": 1}, target)
    with pytest.raises(Exception):
        ckpt.save_atomic({"step": 2, "bad": lambda: None}, target)  # lambdas cannot be pickled
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_load_checkpoint_refuses_foreign_and_unsafe_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(RtsegError, match="not an rtseg checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": ckpt.FORMAT, "object": _RandomItems()}, tmp_path / "pickle.pt")
    with pytest.raises(RtsegError, match="cannot read checkpoint"):  # weights_only refuses the class
        ckpt.load_checkpoint(tmp_path / "pickle.pt")
    with pytest.raises(RtsegError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "none.pt")


def test_csv_log_drops_rows_after_the_resumed_step(tmp_path):
    log = CsvLog(tmp_path / "steps.csv", ("step", "loss"))
    for step in range(1, 6):
        log.write({"step": step, "loss": 1.0 / step})
    log.close()
    log = CsvLog(tmp_path / "steps.csv", ("step", "loss"), resume_step=3)
    log.write({"step": 4, "loss": 0.0})
    log.close()
    rows = read_csv(tmp_path / "steps.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert float(rows[2]["loss"]) == 1.0 / 3 and rows[3]["loss"] == "0.0"  # every digit kept


def test_rendered_outputs(tmp_path):
    from rtseg.data.labels import TRAIN_COLORS, train_to_label_ids
    from rtseg.data.io import write_png
    from rtseg.inference.outputs import output_path, render, write_zip
    from torchvision.datasets import Cityscapes

    train_ids = np.arange(19, dtype=np.uint8).repeat(2).reshape(2, 19)
    image = np.full((2, 19, 3), 100, np.uint8)
    label_ids = render(train_ids, image, "labelids")
    official = {c.train_id: c.id for c in Cityscapes.classes if c.train_id not in (255, -1)}
    assert label_ids.tolist() == np.vectorize(official.get)(train_ids).tolist()
    assert np.array_equal(label_ids, train_to_label_ids(train_ids))
    assert np.array_equal(render(train_ids, image, "color"), TRAIN_COLORS[train_ids])
    overlay = render(train_ids, image, "overlay").astype(int)
    assert np.abs(overlay - (100 + TRAIN_COLORS[train_ids].astype(int)) / 2).max() <= 0.5
    with pytest.raises(RtsegError):
        render(train_ids, image, "jpeg")

    from pathlib import Path

    target = output_path(tmp_path, Path("berlin/berlin_000000_000019_leftImg8bit.jpg"))
    assert target == tmp_path / "berlin" / "berlin_000000_000019_leftImg8bit.png"
    with pytest.raises(RtsegError):
        output_path(tmp_path, Path("../escape.png"))
    write_png(target, label_ids)
    write_zip([target], tmp_path, tmp_path / "predictions.zip")
    with zipfile.ZipFile(tmp_path / "predictions.zip") as archive:
        assert archive.namelist() == ["berlin/berlin_000000_000019_leftImg8bit.png"]
