from rtseg.models.factory import create_model, list_models, model_names  # noqa: F401
from rtseg.models.registry import register_decoder, register_encoder, register_model  # noqa: F401
