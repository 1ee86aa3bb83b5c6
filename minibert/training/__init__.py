"""One training loop for pretraining and fine-tuning: `train(model, task, train_dataset, eval_dataset, args,
collate_fn)`. Start with loop.py; task.py says what a task provides."""

from minibert.training.args import TrainingArguments
from minibert.training.errors import TrainingError
from minibert.training.finetuning import (FineTuningTask, QuestionAnsweringTask, SequenceClassificationTask,
                                          TokenClassificationTask)
from minibert.training.loop import TrainResult, train
from minibert.training.pretraining import PretrainingTask
from minibert.training.task import Task

__all__ = ["TrainingArguments", "TrainingError", "Task", "PretrainingTask", "FineTuningTask",
           "SequenceClassificationTask", "TokenClassificationTask", "QuestionAnsweringTask", "TrainResult", "train"]
