"""The RTSeg paper's published figures (Siam et al. 2018), each tagged with its table.

Copied from the paper's Tables 1-3 as re-assembled in the project's reading notes
(``shared/paper/NOTES.md``); the report prints them beside our measurements, marked
"published". Scores are percentages as printed in the paper; GFLOPs count a multiply-add
as two operations, as ``rtseg.profiling.flops`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Table 1 column headers -> official Cityscapes class names (rtseg.data.labels.CLASS_NAMES).
TABLE1_CLASSES: dict[str, str] = {
    "Road": "road", "Sidewalk": "sidewalk", "Building": "building", "Sign": "traffic sign", "Sky": "sky",
    "Person": "person", "Car": "car", "Bicycle": "bicycle", "Truck": "truck",
}


@dataclass(frozen=True)
class Table1Row:
    """Cityscapes val, 512x1024 input: mIoU and nine class IoUs (%)."""

    model: str
    coarse: bool
    miou: float
    class_iou: dict[str, float] = field(default_factory=dict)  # official class name -> %
    table: str = "Table 1"
    note: str | None = None  # how the authors' run differs from what the row's name says


@dataclass(frozen=True)
class Table3Row:
    """Cityscapes test set: class/category IoU and iIoU (%); GFLOPs at 360x640."""

    model: str | None  # rtseg model name; None for a method rtseg does not implement
    label: str
    gflops_360x640: float | None
    class_iou: float
    class_iiou: float
    category_iou: float
    category_iiou: float
    table: str = "Table 3"


def _table1(model: str, coarse: bool, miou: float, *values: float, note: str | None = None) -> Table1Row:
    return Table1Row(model, coarse, miou, dict(zip(TABLE1_CLASSES.values(), values)), note=note)


# Row 3 is called UNet-ResNet18 in the paper; the authors' code trained a LinkNet (docs/fidelity.md).
ROW3_NOTE = ("Table 1's row 3 is \"UNet-ResNet18\" in the paper, but the authors' code (MSiam/TFSegmentation "
             "run.sh) trained LinkNet-ResNet18, initialised from e-lab's LinkNet already trained on "
             "Cityscapes: its published 57.9 mIoU is not from an ImageNet-initialised network, as rtseg's is")


TABLE1: tuple[Table1Row, ...] = (
    #       model                   coarse  mIoU  Road  Sidew Build Sign  Sky   Person Car  Bicyc Truck
    _table1("skipnet-mobilenet_v1", False, 61.3, 95.9, 73.6, 86.9, 57.6, 91.2, 66.4, 89.0, 63.6, 45.9),
    _table1("skipnet-shufflenet_v1", False, 55.5, 94.8, 68.6, 83.9, 50.5, 88.6, 60.8, 86.5, 58.8, 29.6),
    _table1("linknet-resnet18", False, 57.9, 95.8, 73.2, 85.8, 57.5, 91.0, 66.0, 88.6, 63.2, 31.4, note=ROW3_NOTE),
    _table1("unet-mobilenet_v1", False, 61.0, 95.2, 71.3, 86.8, 60.9, 92.8, 68.1, 88.8, 65.0, 41.3),
    _table1("unet-shufflenet_v1", False, 57.0, 95.1, 69.5, 83.7, 54.3, 89.0, 61.7, 87.8, 59.9, 35.5),
    _table1("dilation-mobilenet_v1", False, 57.8, 95.6, 72.3, 85.9, 57.0, 91.4, 64.9, 87.8, 62.8, 26.3),
    _table1("dilation-shufflenet_v1", False, 53.9, 95.2, 68.5, 84.1, 57.3, 90.3, 62.9, 86.6, 60.2, 23.3),
    _table1("skipnet-mobilenet_v1", True, 62.4, 95.4, 73.9, 86.6, 57.4, 91.1, 65.7, 88.4, 63.3, 45.3),
    _table1("skipnet-shufflenet_v1", True, 59.3, 94.6, 70.5, 85.5, 54.9, 90.8, 60.2, 87.5, 58.8, 45.4),
)

# Table 2: GFLOPs at 512x1024 (the paper gives no parameter counts and no FPS).
TABLE2_GFLOPS_512x1024: dict[str, float] = {
    "skipnet-mobilenet_v1": 13.8,
    "unet-mobilenet_v1": 55.9,
}

TABLE3: tuple[Table3Row, ...] = (
    Table3Row("segnet", "SegNet", 286.03, 56.1, 34.2, 79.8, 66.4),
    Table3Row("enet", "ENet", 3.83, 58.3, 24.4, 80.4, 64.0),
    Table3Row(None, "DeepLab", None, 70.4, 42.6, 86.4, 67.7),
    Table3Row("skipnet-vgg16", "SkipNet-VGG16 (FCN8s)", None, 65.3, 41.7, 85.7, 70.1),
    Table3Row("skipnet-shufflenet_v1", "SkipNet-ShuffleNet", 2.0, 58.3, 32.4, 80.2, 62.2),
    Table3Row("skipnet-mobilenet_v1", "SkipNet-MobileNet", 6.2, 61.5, 35.2, 82.0, 63.0),
)

def table1_row(model: str, coarse: bool = False) -> Table1Row | None:
    for row in TABLE1:
        if row.model == model and row.coarse == coarse:
            return row
    return None


def table3_row(model: str) -> Table3Row | None:
    for row in TABLE3:
        if row.model == model:
            return row
    return None
