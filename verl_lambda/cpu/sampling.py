"""Batched token-in/token-out sampling with a Hugging Face causal LM, following vLLM's sampling semantics.

The ``hf`` rollout server answers verl's agent loop with this loop instead of vLLM. The order of operations and the
returned log-probs match vLLM's v1 sampler with verl's default ``logprobs_mode=processed_logprobs``:
repetition penalty on the raw logits, then temperature, then top-k and top-p; the log-prob of a sampled token is
taken from that processed distribution. With top-k and top-p disabled (verl's defaults) this is exactly the
``log_softmax(logits / temperature)`` that verl's actor recomputes, so rollout and actor log-probs agree.

Layer 4 (methods and backend).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingSpec:
    """One request's sampling parameters, in vLLM's conventions (``top_k <= 0`` and ``top_p >= 1`` disable)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


@dataclass
class SampleOutput:
    token_ids: list[int]
    log_probs: list[float] | None
    finish_reason: str  # "stop" (an EOS token was sampled) or "length"


def _apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """vLLM/CTRL rule: divide positive and multiply negative logits of every token seen in prompt or output."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def _apply_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (to -inf) what top-k and top-p exclude. logits: (B, V)."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        # Drop the least likely tokens whose total mass stays within 1 - top_p; the most likely is always kept.
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum <= 1.0 - top_p
        drop[:, -1] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def _draw(probs: torch.Tensor, generators: Sequence[torch.Generator] | None) -> torch.Tensor:
    """One sample per row of probs (B, V), each row from its own generator when given."""
    if generators is None:
        return torch.multinomial(probs, 1).squeeze(-1)
    return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators, strict=True)])


def _left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.as_tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt) :] = 1
    return input_ids, attention_mask


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    spec: SamplingSpec,
    eos_token_ids: set[int],
    pad_token_id: int,
    generators: Sequence[torch.Generator] | None = None,
) -> list[SampleOutput]:
    """Sample one continuation per prompt, batched with left padding and a KV cache.

    Args:
        model: a transformers causal LM (``model(input_ids, attention_mask, position_ids, past_key_values)``).
        prompts: B lists of prompt token ids (lengths may differ).
        spec: the sampling parameters shared by the batch.
        eos_token_ids: tokens that end a response (kept as its last token, as vLLM does).
        pad_token_id: id used for left padding and for rows that already finished.
        generators: one RNG per prompt, so that a response does not depend on which requests share its batch.

    Returns:
        B outputs with the response token ids, their processed log-probs when ``spec.logprobs``, and the finish reason.
    """
    input_ids, attention_mask = _left_pad(prompts, pad_token_id)
    batch, vocab = input_ids.shape[0], None
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    seen = None
    if spec.repetition_penalty != 1.0:
        vocab = model.get_output_embeddings().weight.shape[0]
        seen = torch.zeros((batch, vocab), dtype=torch.bool)
        seen.scatter_(1, input_ids, attention_mask.bool())

    tokens: list[torch.Tensor] = []
    logps: list[torch.Tensor] = []
    finished = torch.zeros(batch, dtype=torch.bool)
    stop_at_eos = not spec.ignore_eos and bool(eos_token_ids)
    eos = torch.tensor(sorted(eos_token_ids), dtype=torch.long)
    past = None
    step_ids, step_pos = input_ids, position_ids
    for _ in range(spec.max_tokens):
        out = model(
            input_ids=step_ids,
            attention_mask=attention_mask,
            position_ids=step_pos,
            past_key_values=past,
            use_cache=True,
        )
        past = out.past_key_values
        logits = out.logits[:, -1, :].float()
        if seen is not None:
            logits = _apply_repetition_penalty(logits, seen, spec.repetition_penalty)
        if spec.temperature == 0.0:
            logprobs = logits.log_softmax(dim=-1)
            next_token = logits.argmax(dim=-1)
        else:
            logits = _apply_top_k_top_p(logits / spec.temperature, spec.top_k, spec.top_p)
            logprobs = logits.log_softmax(dim=-1)
            next_token = _draw(logprobs.exp(), generators)
        next_token = torch.where(finished, torch.full_like(next_token, pad_token_id), next_token)
        tokens.append(next_token)
        logps.append(logprobs.gather(-1, next_token[:, None]).squeeze(-1))
        if seen is not None:
            seen[torch.arange(batch), next_token] = True
        if stop_at_eos:
            finished |= torch.isin(next_token, eos)
        if bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, torch.ones((batch, 1), dtype=attention_mask.dtype)], dim=-1)
        step_ids, step_pos = next_token[:, None], step_pos[:, -1:] + 1

    token_mat, logp_mat = torch.stack(tokens, dim=1), torch.stack(logps, dim=1)
    outputs = []
    for row in range(batch):
        ids = token_mat[row].tolist()
        length, reason = len(ids), "length"
        if stop_at_eos:
            hits = torch.isin(token_mat[row], eos).nonzero()
            if len(hits):
                length, reason = int(hits[0]) + 1, "stop"
        outputs.append(
            SampleOutput(
                token_ids=ids[:length],
                log_probs=logp_mat[row, :length].tolist() if spec.logprobs else None,
                finish_reason=reason,
            )
        )
    return outputs
