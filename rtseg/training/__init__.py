"""Training and evaluation: the Python API behind ``rtseg train`` and ``rtseg evaluate``.

    from rtseg.training import load_config, train, evaluate, build_eval_dataset, dry_run
    from rtseg.models import load_model

    config = load_config("configs/synthetic_quick.yaml", ["train.iterations=100"])
    result = train(config, "runs/quick")                  # -> TrainResult
    model, state = load_model(result.best_checkpoint)
    scores = evaluate(model, build_eval_dataset(root, "val", (512, 1024), model.mean, model.std))
    report = dry_run(load_config("configs/skipnet-vgg16.yaml"))  # does it start? one synthetic step
"""

from rtseg.training.config import TrainConfig, load_config
from rtseg.training.dry_run import DryRunReport, dry_run
from rtseg.training.evaluator import build_eval_dataset, evaluate, predict_labels
from rtseg.training.trainer import NonFiniteLossError, TrainResult, train

__all__ = ["TrainConfig", "load_config", "train", "TrainResult", "NonFiniteLossError", "evaluate",
           "build_eval_dataset", "predict_labels", "dry_run", "DryRunReport"]
