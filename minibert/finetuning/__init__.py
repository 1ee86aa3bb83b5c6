"""Fine-tuning tasks: reading task data (readers), turning it into model inputs (features) and scoring
predictions (metrics)."""
