"""Model zoo. Importing this package registers every model."""
from . import efficientnet_lite, mobilenetv2, resnet  # noqa: F401  (registration side effect)
from .registry import create_model, list_models, model_entry, register_model

__all__ = ["create_model", "list_models", "model_entry", "register_model"]
