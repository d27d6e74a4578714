"""Export a run's records as Parquet, a Hugging Face dataset with a card, ShareGPT JSONL or
OpenAI fine-tuning JSONL, whole or split by a field (one split per skill). Records are read
line by line and written as they come (Parquet in batches), so memory stays flat however large
the run; pyarrow and datasets are imported only when needed."""

from gristmill.dataset.export.run import EXPORT_FORMATS, SPLIT_FIELDS, export_run

__all__ = ["EXPORT_FORMATS", "SPLIT_FIELDS", "export_run"]
