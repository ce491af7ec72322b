"""rtseg: real-time semantic segmentation benchmark (any encoder x any meta-architecture)."""

from rtseg.errors import RtsegError
from rtseg.models import create_model, list_models, model_names, register_decoder, register_encoder, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "model_names", "register_encoder", "register_decoder",
           "register_model", "RtsegError", "__version__"]
