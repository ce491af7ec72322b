"""Deprecated: ``rtseg.engine`` was split in rtseg 0.2 and goes away in the next release.

Training is ``rtseg.training`` (config, trainer, evaluator, losses, sampling, logs); checkpoint
files are ``rtseg.checkpoint``; rebuilding a network from one is ``rtseg.models.load_model``;
process groups are ``rtseg.distributed``; autocast and devices are ``rtseg.runtime``; the
Predictor is ``rtseg.inference.Predictor``; prediction files are ``rtseg.inference.outputs``.
The old import paths keep working for one release, with a ``DeprecationWarning``; the old
``loss`` module is ``rtseg.training.losses``, whose ``LossRecipe({"out": CrossEntropy()})``
replaces ``weighted_cross_entropy``.
"""

import sys
import warnings

from rtseg import checkpoint, distributed, runtime
from rtseg.inference import Predictor, outputs
from rtseg.models import load_model
from rtseg.training import (NonFiniteLossError, TrainConfig, TrainResult, build_eval_dataset, config, evaluate,
                            evaluator, load_config, logs, losses, sampling, train, trainer)
from rtseg.checkpoint import load_checkpoint

warnings.warn("rtseg.engine is deprecated: use rtseg.training, rtseg.checkpoint, rtseg.models.load_model, "
              "rtseg.distributed, rtseg.runtime and rtseg.inference", DeprecationWarning, stacklevel=2)

# ``import rtseg.engine.trainer`` and friends resolve to the moved modules.
for _name, _module in {"checkpoint": checkpoint, "distributed": distributed, "precision": runtime,
                       "config": config, "trainer": trainer, "evaluator": evaluator, "loss": losses,
                       "sampling": sampling, "logs": logs, "submission": outputs}.items():
    sys.modules[f"{__name__}.{_name}"] = _module

__all__ = ["TrainConfig", "load_config", "train", "TrainResult", "NonFiniteLossError", "evaluate",
           "build_eval_dataset", "load_checkpoint", "load_model", "Predictor"]
