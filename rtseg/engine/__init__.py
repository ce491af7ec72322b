"""Training, evaluation and prediction: the Python API behind ``rtseg train/evaluate/predict``.

    from rtseg.engine import load_config, train, evaluate, build_eval_dataset, load_model, Predictor

    config = load_config("configs/synthetic_quick.yaml", ["train.iterations=100"])
    result = train(config, "runs/quick")                  # -> TrainResult
    model, state = load_model(result.best_checkpoint)
    scores = evaluate(model, build_eval_dataset(root, "val", (512, 1024), model.mean, model.std))
    train_ids = Predictor(model, size=(512, 1024))(rgb_uint8_image)
"""

from rtseg.engine.checkpoint import load_checkpoint, load_model
from rtseg.engine.config import TrainConfig, load_config
from rtseg.engine.evaluator import build_eval_dataset, evaluate
from rtseg.engine.trainer import NonFiniteLossError, TrainResult, train
from rtseg.inference import Predictor  # any engine and precision; eager fp32 by default

__all__ = ["TrainConfig", "load_config", "train", "TrainResult", "NonFiniteLossError", "evaluate",
           "build_eval_dataset", "load_checkpoint", "load_model", "Predictor"]
