"""Train: the one loop (`loop.py`) that training and search share, the trainer, run
directories (`runs.py`), DDP (`distributed.py`) and progress reporting (`progress.py`)."""
