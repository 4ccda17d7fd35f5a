"""Pure-torch versions of the four ``flash_attn.bert_padding`` helpers verl's padding code calls.

verl 0.9.1 falls back to equivalents of its own when flash-attn is missing (it ships CUDA wheels only); verl 0.9.0
imports flash-attn unconditionally, so on a CPU its no-padding batches (``left_right_2_no_padding``) cannot be built.
The CPU backend hands these to verl 0.9.0 instead (``verl_lambda.cpu.patches``).

Layer 4 (methods and backend).
"""

from __future__ import annotations

import torch


def index_first_axis(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``tensor[indices]`` along the first axis, (nnz, ...)."""
    return tensor[indices]


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """Scatter the rows of ``hidden_states`` (nnz, ...) back to a zero-padded (batch, seqlen, ...) tensor."""
    padded = hidden_states.new_zeros(batch * seqlen, *hidden_states.shape[1:])
    padded[indices] = hidden_states
    return padded.reshape(batch, seqlen, *hidden_states.shape[1:])


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor, unused_mask: torch.Tensor | None = None):
    """The valid positions of (batch, seqlen, ...) ``hidden_states`` as one packed sequence.

    Returns:
        packed (nnz, ...), their flat indices (nnz,), cumulative sequence lengths (batch + 1,) int32, the longest
        sequence, and the lengths of the sequences counted without ``unused_mask`` (batch,) int32.
    """
    kept = attention_mask if unused_mask is None else attention_mask + unused_mask
    lengths = kept.sum(-1, dtype=torch.int32)
    indices = torch.nonzero(kept.flatten(), as_tuple=False).flatten()
    cu_seqlens = torch.nn.functional.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
    packed = index_first_axis(hidden_states.reshape(-1, *hidden_states.shape[2:]), indices)
    return packed, indices, cu_seqlens, int(lengths.max()), attention_mask.sum(-1, dtype=torch.int32)


def rearrange(*args, **kwargs):
    from einops import rearrange as einops_rearrange

    return einops_rearrange(*args, **kwargs)
