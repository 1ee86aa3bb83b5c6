"""Train a tiny BertForPreTraining on synthetic data, for the tests that need a process of their own (SIGKILL,
torchrun). Usage: python run_tiny_training.py '{"output_dir": ..., "max_steps": ..., ...}' (TrainingArguments as
JSON; `dropout` sets the model's; `dataset_delay` slows data loading; `pid_dir` gets a file per process, named by its pid, so a test can
SIGKILL every worker torchrun started)."""

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_training import SyntheticPretraining, stack, tiny_model  # noqa: E402

from minibert.pretraining.objective import PretrainingTask  # noqa: E402
from minibert.training import TrainingArguments, train  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    settings = json.loads(sys.argv[1])
    delay = settings.pop("dataset_delay", 0.0)
    dropout = settings.pop("dropout", 0.0)
    if "pid_dir" in settings:
        pid_dir = Path(settings.pop("pid_dir"))
        pid_dir.mkdir(parents=True, exist_ok=True)
        (pid_dir / str(os.getpid())).touch()
    args = TrainingArguments(**{"learning_rate": 1e-3, "progress_bar": None, "plot": False, "log_every": 1,
                                **settings})
    model = tiny_model(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    train(model, PretrainingTask(), SyntheticPretraining(48, dynamic=True, delay=delay),
          SyntheticPretraining(8, seed=1), args, stack)
