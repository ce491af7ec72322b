"""The one registry of what the zoo networks' papers and repositories published."""

import re

import pytest
import torch

import rtseg
from rtseg.models.zoo.published import PublishedRecord, published_records

GPUS = {"GTX 1080 Ti", "Titan Xp", "RTX 2080 Ti", "RTX 3090", "A40", "Tesla T4"}  # each spelled one way
ZOO = ("stdc1_seg", "stdc2_seg", "bisenet_v1", "pp_liteseg_t", "pp_liteseg_b", "ddrnet_23_slim",
       "pidnet_s", "pidnet_m", "pidnet_l", "fast_scnn", "bisenet_v2")


def test_every_zoo_network_has_records_and_every_record_a_network():
    assert {record.model for record in published_records()} == set(ZOO)
    for name in ZOO:
        with torch.device("meta"):
            rtseg.create_model(name, num_classes=3)  # registered under that name
        assert published_records(name) and all(r.model == name for r in published_records(name))
    assert published_records("no_such_model") == ()


@pytest.mark.parametrize("record", published_records(), ids=lambda r: r.model)
def test_a_record_states_its_conditions(record: PublishedRecord):
    assert record.source and (record.val_miou or record.test_miou)
    assert all(0 < miou < 100 for miou in (record.val_miou, record.test_miou) if miou is not None)
    if record.fps is not None:  # a speed is only read with the GPU, the size and the runtime it was measured on
        assert record.fps > 0 and record.gpu in GPUS and record.runtime
        assert re.fullmatch(r"\d+x\d+", record.resolution)
    if record.gflops is not None:  # always 2 x multiply-adds, with how the paper counted
        assert record.flops_note
    assert record.as_dict()["model"] == record.model
