"""What the papers (and the repositories whose weights rtseg loads) published for each zoo network,
with the conditions they measured under: the one registry the benchmark report reads.

``published_records()`` lists every record, ``published_records("pidnet_s")`` one network's. The
report shows them beside rtseg's own figures, marked "published", so that a reader sees why the
papers' FPS do not compare: six GPUs, TensorRT or not, fp16 or fp32, 512x1024 or 1024x2048.

Conventions: mIoU in percent on Cityscapes (val: the validation set, test: the server's test
set); ``resolution`` is the HxW the network ran at (for STDC-Seg and PP-LiteSeg the 1024x2048
images scaled by 0.5 or 0.75); ``gflops`` is 2 x multiply-adds, however the paper counted, and
``flops_note`` says how it counted; ``params_m`` is as published (papers count the eval
network, without training-only heads). docs/zoo.md gives, per family, where each figure was read
and which ones are still to re-check against the paper's table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PublishedRecord:
    model: str  # the rtseg name, e.g. "pidnet_s"
    source: str  # paper (and table), or the official repository's README
    val_miou: float | None = None  # Cityscapes val mIoU, percent
    test_miou: float | None = None  # Cityscapes test mIoU, percent
    fps: float | None = None
    gpu: str | None = None  # e.g. "RTX 3090"
    resolution: str | None = None  # HxW the FPS (and mIoU) were measured at, e.g. "1024x2048"
    runtime: str | None = None  # e.g. "PyTorch fp32", "TensorRT fp16"
    params_m: float | None = None  # millions of parameters, as published
    gflops: float | None = None  # as published, converted to 2 x multiply-adds (see ``flops_note``)
    flops_note: str | None = None  # how the paper counted ("FLOPs" that are multiply-adds, ...)
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# --- STDC-Seg (Fan et al. 2021): val from the README's evaluation.py results, test from the
# paper's Cityscapes table (STDC1-Seg50 and STDC2-Seg75 also in its abstract), FPS from the
# README's latency runs (FasterSeg's TensorRT tool, default fp32 engine), batch 1.
_STDC = "Fan et al. 2021 (CVPR, arXiv 2104.13188), Cityscapes comparison table; MichaelFan01/STDC-Seg README"
_STDC_RUN = {"gpu": "GTX 1080 Ti", "runtime": "TensorRT 5.1.5 fp32"}
STDC_SEG = (
    PublishedRecord("stdc1_seg", _STDC, val_miou=72.2, test_miou=71.9, fps=250.4, resolution="512x1024", **_STDC_RUN,
            note="STDC1-Seg50: the 1024x2048 images at scale 0.5"),
    PublishedRecord("stdc1_seg", _STDC, val_miou=74.5, test_miou=75.3, fps=126.7, resolution="768x1536", **_STDC_RUN,
            note="STDC1-Seg75: scale 0.75"),
    PublishedRecord("stdc2_seg", _STDC, val_miou=74.2, test_miou=73.4, fps=188.6, resolution="512x1024", **_STDC_RUN,
            note="STDC2-Seg50: scale 0.5"),
    PublishedRecord("stdc2_seg", _STDC, val_miou=77.0, test_miou=76.8, fps=97.0, resolution="768x1536", **_STDC_RUN,
            note="STDC2-Seg75: scale 0.75"),
)

# --- BiSeNet v1 (Yu et al. 2018): the paper's own network (never released) and CoinCheung's
# re-implementation, whose weights rtseg loads.
BISENET_V1 = (
    PublishedRecord("bisenet_v1", "Yu et al. 2018 (ECCV, arXiv 1808.00897), Cityscapes speed and accuracy tables: "
            "BiSeNet (ResNet18)",
            val_miou=74.8, test_miou=74.7, fps=65.5, gpu="Titan Xp", resolution="768x1536",
            runtime="PyTorch (precision not stated)", params_m=49.0, gflops=110.6,
            flops_note="the paper's cost table gives 10.8 G 'FLOPs' at 640x360, which can only be multiply-adds "
                       "(the ResNet18 trunk alone is 8.5 G multiply-adds there); scaled by the pixel count to "
                       "768x1536 (55.3 G, as later papers quote it) and doubled",
            note="the authors' own network, which they did not release; rtseg loads CoinCheung's "
                 "re-implementation (13.3M parameters at eval, see docs/zoo.md)"),
    PublishedRecord("bisenet_v1", "CoinCheung/BiSeNet README and tensorrt/README.md (model_final_v1_city_new.pth)",
            val_miou=75.44, fps=112, gpu="A40", resolution="1024x2048", runtime="TensorRT fp32, batch 1",
            note="single-scale val; the README also gives 239 FPS fp16 and 435 FPS int8"),
)

# --- PP-LiteSeg (Peng et al. 2022): the paper's Cityscapes table (T1 and B2 also in its
# abstract), repeated by PaddleSeg's configs/pp_liteseg/README.md; FPS from PaddleSeg's
# deploy/python/infer_onnx_trt.py (an ONNX export run by TensorRT 7 without fp16).
_PPLITE = "Peng et al. 2022 (arXiv 2204.02681), Cityscapes comparison table; PaddleSeg configs/pp_liteseg/README.md"
_PPLITE_RUN = {"gpu": "GTX 1080 Ti", "runtime": "TensorRT 7 fp32 (ONNX export, deploy/python/infer_onnx_trt.py)"}
PP_LITESEG = (
    PublishedRecord("pp_liteseg_t", _PPLITE, val_miou=73.1, test_miou=72.0, fps=273.6, resolution="512x1024", **_PPLITE_RUN,
            note="PP-LiteSeg-T1: the images at scale 0.5"),
    PublishedRecord("pp_liteseg_t", _PPLITE, val_miou=76.0, test_miou=74.9, fps=143.6, resolution="768x1536", **_PPLITE_RUN,
            note="PP-LiteSeg-T2: scale 0.75"),
    PublishedRecord("pp_liteseg_b", _PPLITE, val_miou=75.3, test_miou=73.9, fps=195.3, resolution="512x1024", **_PPLITE_RUN,
            note="PP-LiteSeg-B1: scale 0.5"),
    PublishedRecord("pp_liteseg_b", _PPLITE, val_miou=78.2, test_miou=77.5, fps=102.6, resolution="768x1536", **_PPLITE_RUN,
            note="PP-LiteSeg-B2: scale 0.75"),
)

# --- DDRNet (Hong et al. 2021): the paper's Cityscapes table (its abstract: 77.4 test at
# "102 FPS" on a 2080Ti), val of the released model from the README.
DDRNET = (
    PublishedRecord("ddrnet_23_slim", "Hong et al. 2021 (arXiv 2101.06085), Cityscapes comparison table; val mIoU of the "
            "released model from ydhongHIT/DDRNet README",
            val_miou=77.8, test_miou=77.4, fps=101.6, gpu="RTX 2080 Ti", resolution="1024x2048",
            runtime="PyTorch fp32 (no TensorRT)", params_m=5.7, gflops=72.6,
            flops_note="the paper's '36.3 GFLOPs' at 1024x2048 are multiply-adds (rtseg counts 36.28 G)"),
)

# --- PIDNet (Xu et al. 2023): mIoU and FPS of the released models from the README (PIDNet-S's
# also in the abstract); parameters and GFLOPs from the paper's Cityscapes table.
_PIDNET = ("Xu et al. 2023 (CVPR, arXiv 2206.02066), Cityscapes comparison table (parameters, GFLOPs); "
           "mIoU and FPS of the released models from the XuJiacong/PIDNet README")
_PIDNET_M = ("the paper's PIDNet-M parameters and GFLOPs are those of four BasicBlocks in I stages 3-4; "
             "the released code (and weights) have three: 28.5M, 177.3 G multiply-adds")
PIDNET = tuple(
    PublishedRecord(name, _PIDNET, val_miou=val, test_miou=test, fps=fps, gpu="RTX 3090", resolution="1024x2048",
            runtime="PyTorch fp32, BN folded, no TensorRT (README: no third-party acceleration)",
            params_m=params, gflops=round(2 * gmacs, 1), flops_note="the paper's 'GFLOPs' are multiply-adds",
            note=note)
    for name, val, test, fps, params, gmacs, note in (
        ("pidnet_s", 78.8, 78.6, 93.2, 7.6, 47.6, None),
        ("pidnet_m", 79.9, 79.8, 42.2, 34.4, 197.4, _PIDNET_M),
        ("pidnet_l", 80.9, 80.6, 31.1, 36.9, 275.8, None),
    )
)

# --- Fast-SCNN (Poudel et al. 2019): the paper (68.0 at 123.5 FPS also in its abstract) and
# Tramac's README for the weights rtseg loads.
FAST_SCNN = (
    PublishedRecord("fast_scnn", "Poudel et al. 2019 (arXiv 1902.04502), Tables 2-3 (Cityscapes test, speed)",
            test_miou=68.0, fps=123.5, gpu="Titan Xp", resolution="1024x2048",
            runtime="TensorFlow (precision not stated)", params_m=1.11,
            note="the authors' own model; no code or weights were released"),
    PublishedRecord("fast_scnn", "Tramac/Fast-SCNN-pytorch README (the weights rtseg loads)",
            val_miou=54.84, note="trained with 768x768 crops; the README says the paper's setting differs"),
)

# --- BiSeNet V2 (Yu et al. 2021): the paper (72.6 test at 156 FPS on a GTX 1080 Ti also in its
# abstract) and CoinCheung's README for the weights rtseg loads.
BISENET_V2 = (
    PublishedRecord("bisenet_v2", "Yu et al. 2021 (IJCV, arXiv 2004.02147), Cityscapes comparison table",
            val_miou=73.4, test_miou=72.6, fps=156.0, gpu="GTX 1080 Ti", resolution="512x1024",
            runtime="TensorRT (precision not stated; CoinCheung/BiSeNet#62)", gflops=42.3,
            flops_note="the paper's '21.15 GFLOPs' are multiply-adds: its detail branch alone is 23.4 GFLOPs "
                       "counted as 2 x multiply-adds (docs/zoo.md)",
            note="the authors' model: 1024x2048 images resized to 512x1024, predictions upsampled; "
                 "no weights released"),
    PublishedRecord("bisenet_v2", "CoinCheung/BiSeNet README (the weights rtseg loads)",
            val_miou=74.95, fps=103.0, gpu="Tesla T4", resolution="1024x2048", runtime="TensorRT fp32",
            note="single-scale val; the README's 161 FPS are TensorRT fp16, 198 int8"),
)

_RECORDS = STDC_SEG + BISENET_V1 + PP_LITESEG + DDRNET + PIDNET + FAST_SCNN + BISENET_V2


def published_records(model: str | None = None) -> tuple[PublishedRecord, ...]:
    """Every zoo network's published records, or those of the network registered as ``model``."""
    return tuple(record for record in _RECORDS if model is None or record.model == model)
