"""verl's ``ppo_loss`` called the way the FSDP engine calls it, on a synthetic micro-batch, for loss tests."""

import torch
from verl.utils import tensordict_utils as tu
from verl.workers.config import FSDPActorConfig
from verl.workers.utils import losses
from verl.workers.utils.padding import left_right_2_no_padding

from verl_lambda import lambda_grpo
from verl_lambda.cpu.harness import make_batch

N_GROUPS, GROUP = 3, 4
BS = N_GROUPS * GROUP


def actor_config(mode, **kwargs):
    return FSDPActorConfig(
        strategy="fsdp", rollout_n=GROUP, ppo_micro_batch_size_per_gpu=BS, loss_agg_mode=mode, **kwargs
    )


def loss_inputs(seed=0, on_policy=False, dp_size=1):
    """(data, log_prob leaf, entropy leaf) in the form the FSDP engine hands to ppo_loss."""
    batch = make_batch(vocab_size=40, n_groups=N_GROUPS, group_size=GROUP, max_response_len=10, seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    data = left_right_2_no_padding(batch.to_tensordict())
    total = int(data["input_ids"].offsets()[-1])
    log_prob = (-torch.rand(total, generator=gen) * 3).requires_grad_()
    entropy = (torch.rand(total, generator=gen) * 2).requires_grad_()
    mask = data["response_mask"].bool()
    if on_policy:
        from verl.workers.utils.padding import no_padding_2_padding

        data["old_log_probs"] = no_padding_2_padding(log_prob.detach(), data) * mask
    else:
        data["old_log_probs"] = (-torch.rand(mask.shape, generator=gen) * 3) * mask
    data["ref_log_prob"] = (-torch.rand(mask.shape, generator=gen) * 3) * mask
    tu.assign_non_tensor(
        data, dp_size=dp_size, batch_num_tokens=int(mask.sum()) * dp_size, global_batch_size=BS * dp_size
    )
    return data, log_prob, entropy


def metric_values(metric):
    values = metric.values if hasattr(metric, "values") else [metric]
    return [float(v) for v in values]


def run_loss(config, data, log_prob, entropy=None, lam=None):
    """Call ppo_loss as the engine does; for lambda_grpo attach the group rows and make λ active."""
    log_prob.grad = None
    output = {"log_probs": log_prob}
    if entropy is not None:
        entropy.grad = None
        output["entropy"] = entropy
    if config.loss_agg_mode != "lambda_grpo":
        loss, metrics = losses.ppo_loss(config, output, data)
        loss.backward()
        return loss, metrics, None
    state = lambda_grpo.LearnableLambda(config.lambda_grpo)
    if lam is not None:
        state.value.data.fill_(lam)
    lambda_grpo.attach_group_lengths(data, state, dp_group=None)
    lambda_grpo.attach_weights(data, state)
    with lambda_grpo.active_lambda(state):
        loss, metrics = losses.ppo_loss(config, output, data)
    loss.backward()
    return loss, metrics, state
