"""Tools that work on any task's run folder, model folder or config after training: quantize, export,
analyzers, to-parquet and cleanup (``neurotrain quantize|export|analyze|to-parquet|cleanup``). Each asks
the task (``tasks/base.py``) for what differs between tasks and never names one."""
