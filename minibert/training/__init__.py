"""What pretraining and fine-tuning share: the one training loop and what it needs.

    train(model, task, train_dataset, eval_dataset, args, collate_fn) -> TrainResult

Reading order: task.py (what a task gives the loop: loss sums and counts, evaluation), args.py (every knob of a
run), loop.py (the loop, in named steps), then the modules it calls, one job each: batches.py (which examples each
step reads), optim.py (AdamW and the schedule), precision.py (`precision="auto"`), processes.py (torchrun's
processes: the only reader of RANK and WORLD_SIZE), train_state.py (atomic checkpoints, exact resume),
run_folder.py (one run per output folder), reporting.py and curves.py (metrics.jsonl, progress, curves.png),
fingerprint.py (the data's content hash). Its error, TrainingError, is in minibert.errors with the others. The
tasks themselves live with their use: minibert.pretraining.objective and minibert.finetuning.objective."""

from minibert.errors import TrainingError
from minibert.training.args import TrainingArguments
from minibert.training.loop import TrainResult, train
from minibert.training.task import Task

__all__ = ["TrainingArguments", "TrainingError", "Task", "TrainResult", "train"]
