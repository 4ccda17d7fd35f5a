"""Reproduce the papers' comparisons on verl: data, answer checking, launches, evaluation and the results table.

- ``datasets``: one registry of the training sets and evaluation benchmarks, the prompt templates, and their
  conversion to verl's parquet schema (``examples/prepare_data.py`` is its command line).
- ``reward``: ``compute_score`` for ``reward.custom_reward_function``: extracts each response's answer and routes it
  to Math-Verify (default) or the strict checker, returning both verdicts and the problem's id.
- ``verify``: Math-Verify in child processes with hard timeouts, so it works from verl's reward threads.
- ``regimes``: each paper's regime (``PAPER=``: models, response caps, prompt, data, benchmarks, evaluation, the
  methods it compares) and the settings table of ``docs/reproduce/settings.md``, rendered from the same objects.
- ``cost``: GPU-hour estimates per regime, size and preset (``docs/reproduce/cost.md``).
- ``launch``: the training launches (``scripts/run_qwen*.sh``) and checkpoint evaluation (``scripts/eval_ckpt.sh``),
  every setting with its source; ``DRY_RUN=1`` composes and validates without launching (``compose``).
- ``report``: the papers' table from the runs' results: mean ± std over seeds, paired bootstrap intervals against
  GRPO, problems scored, and the published numbers of ``published`` next to rows run in their paper's regime; runs
  whose recorded settings differ are never merged into one row.

Nothing here imports verl at import time, so the registry and the report work without a GPU stack.

Layer 7 (applications).
"""
