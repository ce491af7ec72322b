"""The report's tables, built from ``results.json``: the paper's Tables 1-3 with our rows and,
beside each, the published figures where the paper has them (marked "published"). On any other
dataset than Cityscapes the tables take that dataset's classes and scores, and no published row
appears (the paper's figures are Cityscapes').

A ``Table`` is plain data (headers, rows of strings, which rows are published), rendered to
Markdown or HTML by ``rtseg.benchmark.report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rtseg.benchmark import published
from rtseg.benchmark.results import results_dataset
from rtseg.data.dataset import DatasetInfo
from rtseg.data.labels import CATEGORY_NAMES, CLASS_NAMES
from rtseg.models.zoo.published import published_records

DISPLAY_NAMES = {
    "skipnet": "SkipNet", "unet": "UNet", "dilation": "Dilation", "linknet": "LinkNet", "mobilenet_v1": "MobileNet",
    "shufflenet_v1": "ShuffleNet", "resnet18": "ResNet18", "vgg16": "VGG16", "enet": "ENet", "segnet": "SegNet",
    "lraspp": "LR-ASPP", "bisenet_v1": "BiSeNet V1", "bisenet_v2": "BiSeNet V2", "stdc1_seg": "STDC1-Seg",
    "stdc2_seg": "STDC2-Seg", "pp_liteseg_t": "PP-LiteSeg-T", "pp_liteseg_b": "PP-LiteSeg-B",
    "ddrnet_23_slim": "DDRNet-23-slim", "pidnet_s": "PIDNet-S", "pidnet_m": "PIDNet-M", "pidnet_l": "PIDNet-L",
    "fast_scnn": "Fast-SCNN", "lraspp_mobilenet_v3_large": "LR-ASPP MobileNetV3-Large",
}
MISSING = "-"
OURS = "ours"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    published_rows: set[int] = field(default_factory=set)  # indices of rows holding the paper's figures
    notes: list[str] = field(default_factory=list)

    def add(self, cells: list, is_published: bool = False) -> None:
        if is_published:
            self.published_rows.add(len(self.rows))
        self.rows.append([str(c) for c in cells])


def display(name: str | None) -> str:
    return MISSING if name is None else DISPLAY_NAMES.get(name, name)


def model_label(model: dict) -> str:
    """``SkipNet-MobileNet``, ``SkipNet-MobileNet (coarse)``, ``ENet``."""
    if model.get("encoder"):
        label = f"{display(model['decoder'])}-{display(model['encoder'])}"
    else:
        label = display(model.get("whole_model") or model["model"])
    return label + (" (coarse)" if model.get("coarse") else "")


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal, as the paper prints scores."""
    return MISSING if value is None else f"{100 * value:.1f}"


def num(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def published_label(table: str, extra: str = "") -> str:
    return f"published ({table}{', ' + extra if extra else ''})"


def eval_params(cost: dict) -> int:
    """The parameters the eval output uses (older results recorded only all of them)."""
    return cost.get("eval_params") or cost["params"]


def _evaluated(results: dict) -> list[dict]:
    return [m for m in results["models"] if m.get("evaluate")]


def table1(results: dict) -> Table:
    """mIoU and the paper's nine class columns per decoder x encoder, published rows beside ours."""
    classes = list(published.TABLE1_CLASSES)
    table = Table("Table 1: mIoU and per-class IoU (%) on the validation set",
                  ["Decoder", "Encoder", "Coarse", "Source", "mIoU", *classes])
    for model in _evaluated(results):
        evaluation = model["evaluate"]
        decoder = model["decoder"] or model.get("whole_model") or model["model"]
        first = [display(decoder), display(model["encoder"]), "yes" if model["coarse"] else "no"]
        class_iou = evaluation.get("class_iou") or {}
        table.add([*first, OURS, pct(evaluation.get("miou")),
                   *(pct(class_iou.get(published.TABLE1_CLASSES[c])) for c in classes)])
        paper = published.table1_row(model["model"], model["coarse"])
        if paper is not None:
            table.add([*first, published_label(paper.table), num(paper.miou),
                       *(num(paper.class_iou[published.TABLE1_CLASSES[c]]) for c in classes)], is_published=True)
            if paper.note and paper.note not in table.notes:
                table.notes.append(paper.note)
    return table


def table1_full(results: dict) -> Table:
    """All 19 evaluated classes (ours only: the paper printed nine)."""

    table = Table("Table 1 (all 19 classes): per-class IoU (%)", ["Model", "mIoU", *CLASS_NAMES])
    for model in _evaluated(results):
        class_iou = model["evaluate"].get("class_iou") or {}
        table.add([model_label(model), pct(model["evaluate"].get("miou")), *(pct(class_iou.get(c)) for c in CLASS_NAMES)])
    return table


def accuracy_table(results: dict, dataset: DatasetInfo) -> Table:
    """Any dataset but Cityscapes: its summary scores, then the IoU of each of its classes (ours only)."""
    names = {"miou": "mIoU", "pixel_accuracy": "Pixel accuracy", "mean_accuracy": "Mean accuracy"}
    table = Table(f"Accuracy on {dataset.name}: mIoU, pixel and mean accuracy, per-class IoU (%)",
                  ["Model", *(names.get(k, k) for k in dataset.score_keys), *dataset.class_names])
    for model in _evaluated(results):
        evaluation = model["evaluate"]
        class_iou = evaluation.get("class_iou") or {}
        table.add([model_label(model), *(pct(evaluation.get(k)) for k in dataset.score_keys),
                   *(pct(class_iou.get(c)) for c in dataset.class_names)])
    return table


def table2(results: dict, with_published: bool = True) -> Table:
    """Parameters, GFLOPs at 512x1024, FPS model-only and end-to-end, with engine and precision."""
    table = Table("Table 2: cost and speed (GFLOPs at 512x1024; FPS = median of the timed runs, batch 1)",
                  ["Model", "Source", "Params (M)", "GFLOPs 512x1024", "FPS model only", "FPS end-to-end",
                   "Latency end-to-end (ms)", "Timed at", "Engine", "Precision", "Efficiency (%)"])
    for model in results["models"]:
        cost, speed = model.get("cost") or {}, model.get("speed") or {}
        if not cost and not speed:
            continue
        efficiency = speed.get("efficiency")
        efficiency_cell = ("fault" if speed.get("efficiency_fault") or (efficiency or 0) > 1  # older records too
                           else pct(efficiency) if efficiency is not None else MISSING)
        table.add([model_label(model), OURS, num(eval_params(cost) / 1e6, 2) if cost else MISSING,
                   num((cost.get("gflops") or {}).get("512x1024")), num(speed.get("fps_model")), num(speed.get("fps")),
                   num(speed.get("latency_ms")), speed.get("size", MISSING), speed.get("engine", MISSING),
                   speed.get("precision", MISSING), efficiency_cell])
        paper_gflops = published.TABLE2_GFLOPS_512x1024.get(model["model"]) if with_published else None
        if paper_gflops is not None and not model["coarse"]:
            table.add([model_label(model), published_label("Table 2"), MISSING, num(paper_gflops),
                       *([MISSING] * 7)], is_published=True)
    if with_published:
        table.notes.append("The paper published GFLOPs for two models and no FPS. Its authors later reported about "
                           "141 FPS (SkipNet-MobileNet) and 143 FPS (SkipNet-ShuffleNet) at 360x640 on a Titan X "
                           "(Pascal) with an optimised TensorFlow graph, outside the paper.")
    table.notes.append("Params: those the eval output uses, as the papers count them (a model's training-only "
                       "auxiliary, boundary or detail heads left out; results.csv also has all of them).")
    table.notes.append("Model only: normalised image tensor in, logits out. End-to-end: the same tensor in, "
                       "label map out (argmax included). Efficiency: achieved FLOP/s (model only) over this "
                       "machine's peak in the same precision (the faster of a matrix multiply and, on a CPU, a large "
                       "convolution; best of several trials, before and after the timing); \"fault\" marks a model "
                       "that beat that peak, a measurement fault (the peak's trials ran on a busier machine or missed "
                       "a faster kernel), so no efficiency is given.")
    return table


def table3(results: dict) -> Table:
    """Class and category IoU and iIoU with GFLOPs at 360x640; published rows (test set) beside ours."""
    table = Table("Table 3: class and category IoU and iIoU (%), GFLOPs at 360x640",
                  ["Model", "Source", "GFLOPs 360x640", "Class IoU", "Class iIoU", "Category IoU", "Category iIoU"])
    for model in results["models"]:
        evaluation, cost = model.get("evaluate"), model.get("cost") or {}
        if not evaluation:
            continue
        table.add([model_label(model), f"{OURS} (val)", num((cost.get("gflops") or {}).get("360x640"), 2),
                   pct(evaluation.get("miou")), pct(evaluation.get("miiou")), pct(evaluation.get("category_miou")),
                   pct(evaluation.get("category_miiou"))])
        paper = published.table3_row(model["model"]) if not model["coarse"] else None
        if paper is not None:
            table.add([model_label(model), published_label(paper.table, "test set"), num(paper.gflops_360x640, 2),
                       num(paper.class_iou), num(paper.class_iiou), num(paper.category_iou), num(paper.category_iiou)],
                      is_published=True)
    return table


def category_table(results: dict) -> Table:
    """Per-category IoU and the two category iIoUs (human, vehicle)."""

    table = Table("Categories: IoU per category and iIoU (%)",
                  ["Model", *CATEGORY_NAMES, "human iIoU", "vehicle iIoU"])
    for model in _evaluated(results):
        evaluation = model["evaluate"]
        iou, iiou = evaluation.get("category_iou") or {}, evaluation.get("category_iiou") or {}
        table.add([model_label(model), *(pct(iou.get(c)) for c in CATEGORY_NAMES),
                   pct(iiou.get("human")), pct(iiou.get("vehicle"))])
    return table


def realtime_table(results: dict, data_text: str = "val") -> Table:
    """Today's real-time models: our figures on this machine and data beside each published record
    (its GPU, resolution and runtime), so that a reader sees why the papers' FPS do not compare."""
    table = Table("Today's real-time models: ours beside their published records",
                  ["Model", "Source", "mIoU val", "mIoU test", "FPS", "Hardware", "Resolution", "Runtime",
                   "Params (M)", "GFLOPs"])
    for model in results["models"]:
        records = published_records(model["model"]) if not model.get("coarse") else ()
        if not records:
            continue
        evaluation, cost, speed = model.get("evaluate") or {}, model.get("cost") or {}, model.get("speed") or {}
        hardware = (speed.get("hardware") or {})
        device = hardware.get("gpu") if speed.get("device", "").startswith("cuda") else hardware.get("cpu")
        table.add([model_label(model), f"{OURS} ({data_text})", pct(evaluation.get("miou")), MISSING,
                   num(speed.get("fps")), device or speed.get("device", MISSING), speed.get("size", MISSING),
                   f"{speed['engine']} {speed['precision']}" if speed else MISSING,
                   num(eval_params(cost) / 1e6, 2) if cost else MISSING,
                   f"{num((cost.get('gflops') or {}).get('512x1024'))} at 512x1024" if cost else MISSING])
        for record in records:
            table.add([model_label(model), "published: " + record.source, num(record.val_miou),
                       num(record.test_miou), num(record.fps), record.gpu or MISSING, record.resolution or MISSING,
                       record.runtime or MISSING, num(record.params_m, 2),
                       num(record.gflops) + (f" ({record.flops_note})" if record.flops_note else "")
                       if record.gflops is not None else MISSING], is_published=True)
            if record.note:
                table.notes.append(f"{model_label(model)}, {record.resolution or 'published'}: {record.note}")
    table.notes.append("Published FPS come from each paper's own GPU, runtime (often TensorRT) and resolution, "
                       "and rarely include the argmax; ours are one protocol on one machine (docs/speed.md). "
                       "Only figures measured side by side compare. Published GFLOPs are converted to 2 x "
                       "multiply-adds; they were counted at the published resolution.")
    return table


def all_tables(results: dict) -> list[Table]:
    """Cityscapes: Table 1, its 19 classes, Tables 2 and 3, categories. Another dataset: its
    accuracy table and Table 2's cost and speed, without the paper's rows."""
    dataset = results_dataset(results)
    if dataset.scoring != "cityscapes":
        return [accuracy_table(results, dataset), table2(results, with_published=False)]
    return [table1(results), table1_full(results), table2(results), table3(results), category_table(results)]
