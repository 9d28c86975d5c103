"""Deep multi-subject decoders (MindEye2-, Brain-IT- and MindBridge-style), their training
through ``accelerate`` with resumable checkpoints, and new-subject adaptation."""

from ._base import DeepDecoder, DeepDecoderConfig, load_decoder
from .adapt import ADAPT_METHODS, adapt_new_subject, train_from_scratch
from .brainit import BrainITConfig, BrainITDecoder
from .losses import info_nce, mixco, mixco_nce, soft_clip_loss
from .mindbridge import MindBridgeConfig, MindBridgeDecoder
from .mindeye2 import MindEye2Config, MindEye2Decoder
from .prior import DiffusionPrior
from .training import TrainConfig, TrainResult, latest_checkpoint, train_decoder

__all__ = [
    "ADAPT_METHODS",
    "BrainITConfig",
    "BrainITDecoder",
    "DeepDecoder",
    "DeepDecoderConfig",
    "DiffusionPrior",
    "MindBridgeConfig",
    "MindBridgeDecoder",
    "MindEye2Config",
    "MindEye2Decoder",
    "TrainConfig",
    "TrainResult",
    "adapt_new_subject",
    "info_nce",
    "latest_checkpoint",
    "load_decoder",
    "mixco",
    "mixco_nce",
    "soft_clip_loss",
    "train_decoder",
    "train_from_scratch",
]
