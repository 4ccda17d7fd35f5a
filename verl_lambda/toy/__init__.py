"""The embedded default for demos and tests: a tiny Qwen2 model, a character tokenizer and a synthetic task.

Everything is built locally from fixed seeds, so nothing is downloaded. ``python -m verl_lambda.toy OUT_DIR``
writes ``OUT_DIR/model`` and ``OUT_DIR/data/{train,test}.parquet``.

Layer 2 (foundations).
"""

from verl_lambda.toy.model import build_model, build_tokenizer
from verl_lambda.toy.task import REWARD_FN_NAME, build_dataset, compute_score, reward_fn_path

__all__ = ["REWARD_FN_NAME", "build_dataset", "build_model", "build_tokenizer", "compute_score", "reward_fn_path"]
