"""Reproduce the papers' comparisons on verl: data, answer checking, config dry runs and the results table.

- ``datasets``: one registry of the training sets and evaluation benchmarks, and their conversion to verl's parquet
  schema (``examples/prepare_data.py`` is its command line).
- ``reward``: ``compute_score`` for ``reward.custom_reward_function``, one answer checker per ``data_source``.
- ``compose``: compose and validate a launch's config exactly as ``verl.trainer.main_ppo`` does, without launching
  (``DRY_RUN=1`` of the ``scripts/run_qwen*.sh`` launchers).
- ``report``: the papers' table (per-benchmark accuracy and average, one row per run) from verl's logged validation
  metrics.

Nothing here imports verl at import time, so the registry and the report work without a GPU stack.
"""
