"""The accessors: the only reads and writes of verl's internal structures outside the patch tables' wrappers.

The two algorithms (``lambda_grpo``, ``grpo_lambda``) and the wrappers reach verl's batches, configs and workers
through these functions, so that a change of verl's internals is fixed here, once, and listed in
``verl_lambda.capabilities`` (each internal names the accessor that uses it). Importing this module imports nothing
of verl: each accessor imports what it needs when called.

Layer 2 (foundations).
"""

from __future__ import annotations

from typing import Any

# verl's V1 trainer pads a batch with synthetic samples whose uid starts with this (trainer/ppo/padding_utils.py).
_PADDING_UID_PREFIX = "pad"


def actor_loss_config(worker: Any) -> Any | None:
    """The actor config a ``TrainingWorker``'s loss was built with (verl binds it as ``partial(ppo_loss, config=)``)."""
    return getattr(getattr(worker, "loss_fn", None), "keywords", {}).get("config")


def sample_field(data: Any, key: str) -> list[Any] | None:
    """A per-sample non-tensor field of a training batch (``uid``, ``session_id``) as a list, or None."""
    from verl.utils import tensordict_utils as tu

    return tu.get(data, key)


def is_padding_uid(uid: str) -> bool:
    return uid.startswith(_PADDING_UID_PREFIX)


def append_metrics(output: Any, metrics: dict[str, float]) -> None:
    """Add one value per metric to ``train_mini_batch``'s output (a TensorDict with a ``metrics`` dict of lists)."""
    from verl.utils import tensordict_utils as tu

    merged = dict(tu.get(output, "metrics"))
    merged.update({key: [value] for key, value in metrics.items()})
    tu.assign_non_tensor(output, metrics=merged)


def global_batch_info(config: Any) -> dict[str, Any]:
    """The global counts ``ppo_loss`` sets on the actor config for this micro-batch, for ``agg_loss``."""
    return config.global_batch_info


def accelerator_device() -> Any:
    """The current accelerator device of this process, as verl's platform reports it."""
    import torch
    from verl.utils.device import get_device_id, get_device_name

    name = get_device_name()
    return torch.device(name) if name == "cpu" else torch.device(name, get_device_id())


def ray_actor_classes(cls: Any) -> list[type]:
    """The classes behind a ``@ray.remote`` class: the one it decorates, and the subclass Ray's actor process
    instantiates (which holds its own copy of ``__init__``); ``[cls]`` for a plain class."""
    modified = getattr(getattr(cls, "__ray_metadata__", None), "modified_class", cls)
    return list(dict.fromkeys([getattr(modified, "__ray_actor_class__", modified), modified]))


def put_rows(batch: Any, fields: dict[str, Any]) -> Any:
    """Store per-row tensors for the rows of a V1 batch (``KVBatchMeta``) in verl's TransferQueue, where the actor
    update reads its batch from; returns the batch's metadata with the fields added, as verl's own puts do."""
    import transfer_queue as tq
    from tensordict import TensorDict

    rows = TensorDict(fields, batch_size=len(batch.keys))
    return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=rows)
