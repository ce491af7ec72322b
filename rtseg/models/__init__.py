"""Every network rtseg builds: the encoder x decoder grid, ENet and SegNet, today's real-time models.

    model = rtseg.models.create_model("skipnet-mobilenet_v1", num_classes=19)
    model, checkpoint = rtseg.models.load_model("runs/quick/best.pt")
"""

from rtseg.models.factory import create_model, list_models, load_model, model_from_checkpoint, model_names  # noqa: F401
from rtseg.models.registry import register_decoder, register_encoder, register_model  # noqa: F401
from rtseg.models.segmentation import SegmentationModel, SegmentationNetwork  # noqa: F401
