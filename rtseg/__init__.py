"""rtseg: real-time semantic segmentation benchmark (any encoder x any meta-architecture).

The model API is imported on first use (PEP 562), so ``import rtseg.metrics`` or
``rtseg --help`` does not pay for importing timm and torchvision.
"""

from rtseg.errors import RtsegError

__version__ = "0.1.0"
_MODEL_API = ("create_model", "list_models", "model_names", "register_encoder", "register_decoder",
              "register_model")
__all__ = [*_MODEL_API, "RtsegError", "__version__"]


def __getattr__(name: str):
    if name in _MODEL_API:
        import rtseg.models

        return getattr(rtseg.models, name)
    raise AttributeError(f"module 'rtseg' has no attribute {name!r}")
