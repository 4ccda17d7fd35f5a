"""The ``hf`` rollout: batched sampling with vLLM's semantics, the server verl's agent loop talks to, and its
log-probs against verl's FSDP actor recomputing the same tokens."""

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from verl_lambda.cpu.hf_rollout import HFServer, sampling_spec
from verl_lambda.cpu.sampling import SamplingSpec, sample


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]  # different lengths: left padding is exercised


def full_forward_greedy(model, prompt, steps):
    """Reference: greedy decoding by re-running the whole sequence each step (no cache, no padding)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


def test_greedy_batched_with_cache_equals_unbatched_full_forward(model_and_tokenizer):
    model, _ = model_and_tokenizer
    outputs = sample(model, PROMPTS, SamplingSpec(max_tokens=12, temperature=0.0), set(), pad_token_id=0)
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        assert out.token_ids == full_forward_greedy(model, prompt, 12)
        assert out.finish_reason == "length"
    top1 = sample(model, PROMPTS, SamplingSpec(max_tokens=12, temperature=1.0, top_k=1), set(), pad_token_id=0)
    assert [o.token_ids for o in top1] == [o.token_ids for o in outputs]


def test_eos_ends_a_response_and_is_kept(model_and_tokenizer):
    model, _ = model_and_tokenizer
    free = sample(model, PROMPTS, SamplingSpec(max_tokens=12, temperature=0.0), set(), pad_token_id=0)
    eos = free[1].token_ids[4]  # declare the 5th greedy token of prompt 1 an end-of-sequence token
    stopped = sample(model, PROMPTS, SamplingSpec(max_tokens=12, temperature=0.0), {eos}, pad_token_id=0)
    first = free[1].token_ids.index(eos)
    assert stopped[1].token_ids == free[1].token_ids[: first + 1] and stopped[1].finish_reason == "stop"
    for got, want in zip(stopped, free, strict=True):  # other rows stop at their own first eos, if any
        cut = want.token_ids.index(eos) + 1 if eos in want.token_ids else len(want.token_ids)
        assert got.token_ids == want.token_ids[:cut]
    ignored = sample(model, PROMPTS, SamplingSpec(max_tokens=12, temperature=0.0, ignore_eos=True), {eos}, 0)
    assert [o.token_ids for o in ignored] == [o.token_ids for o in free]


def test_sampled_logprobs_are_the_temperature_scaled_distribution(model_and_tokenizer):
    model, _ = model_and_tokenizer
    spec = SamplingSpec(max_tokens=10, temperature=0.7, logprobs=True)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    outputs = sample(model, PROMPTS, spec, set(), pad_token_id=0, generators=gens)
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        ids = torch.tensor([prompt + out.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1] / 0.7
        want = logits.log_softmax(-1).gather(-1, torch.tensor(out.token_ids)[:, None]).squeeze(-1)
        torch.testing.assert_close(torch.tensor(out.log_probs), want, atol=1e-5, rtol=1e-5)


def test_top_k_and_top_p_restrict_the_support(model_and_tokenizer):
    model, _ = model_and_tokenizer
    with torch.no_grad():
        first = model(torch.tensor([PROMPTS[0]])).logits[0, -1]
    allowed_k = set(first.topk(3).indices.tolist())
    probs = first.softmax(-1)
    order = probs.argsort(descending=True)
    nucleus = order[: int((probs[order].cumsum(0) < 0.3).sum()) + 1].tolist()
    for seed in range(20):
        gen = [torch.Generator().manual_seed(seed)]
        k = sample(model, [PROMPTS[0]], SamplingSpec(max_tokens=1, top_k=3), set(), 0, gen)[0].token_ids[0]
        p = sample(model, [PROMPTS[0]], SamplingSpec(max_tokens=1, top_p=0.3), set(), 0, gen)[0].token_ids[0]
        assert k in allowed_k and p in nucleus


def test_a_response_does_not_depend_on_its_batch(model_and_tokenizer):
    model, _ = model_and_tokenizer
    spec = SamplingSpec(max_tokens=10)
    alone = sample(model, [PROMPTS[1]], spec, set(), 0, [torch.Generator().manual_seed(4)])[0]
    gens = [torch.Generator().manual_seed(s) for s in (9, 4, 7)]
    batched = sample(model, PROMPTS, spec, set(), 0, gens)[1]
    assert alone.token_ids == batched.token_ids


def rollout_config(**kwargs):
    base = dict(
        prompt_length=16,
        response_length=8,
        max_model_len=None,
        temperature=1.0,
        top_p=1.0,
        top_k=-1,
        repetition_penalty=1.0,
        ignore_eos=False,
        seed=0,
        max_num_seqs=64,
    )
    from verl.workers.config import RolloutConfig

    return RolloutConfig(name="hf", **{**base, **kwargs})  # verl's own, as its agent loop hands it to the server


def test_length_limits_follow_verls_vllm_server():
    config = rollout_config()
    assert sampling_spec(config, 5, {}).max_tokens == 8  # response_length
    assert sampling_spec(config, 20, {}).max_tokens == 4  # prompt + response budget
    assert sampling_spec(config, 5, {"max_tokens": 3}).max_tokens == 3
    assert sampling_spec(config, 5, {"max_tokens": 100}).max_tokens == 19  # max_model_len - prompt
    with pytest.raises(ValueError, match="leaves no room"):
        sampling_spec(config, 24, {})


def test_server_answers_concurrent_requests_with_n_distinct_samples(tiny_model_dir, model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    from verl.workers.config import HFModelConfig

    server = HFServer(rollout_config(response_length=12), HFModelConfig(path=tiny_model_dir), 0)

    async def go():
        params = {"temperature": 1.0, "logprobs": True}
        requests = [server.generate(PROMPTS[i % 2], dict(params), f"r{i}") for i in range(8)]
        return await asyncio.gather(*requests)

    outputs = asyncio.run(go())
    assert len(outputs) == 8 and all(1 <= len(o.token_ids) <= 12 for o in outputs)
    assert all(len(o.log_probs) == len(o.token_ids) for o in outputs)
    same_prompt = [tuple(o.token_ids) for o in outputs[0::2]]
    assert len(set(same_prompt)) == 4  # n samples of one prompt are different draws
    for out in outputs:  # EOS only ever at the end
        assert tokenizer.eos_token_id not in out.token_ids[:-1]


def test_rollout_logprobs_agree_with_the_fsdp_actor(tiny_model_dir, model_and_tokenizer):
    """What verl logs as training/rollout_probs_diff_max: sampled log-probs vs the actor's recomputation."""
    from verl_lambda.cpu.harness import ActorHarness, init_process_group, make_batch

    model, _ = model_and_tokenizer
    init_process_group(0, 1)
    harness = ActorHarness(tiny_model_dir)
    batch = make_batch(vocab_size=40, n_groups=4, group_size=4, prompt_len=8, max_response_len=10, seed=0)
    prompts = [
        row[mask.bool()].tolist()
        for row, mask in zip(batch.tensors["prompts"], batch.tensors["attention_mask"][:, :8], strict=True)
    ]
    gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    outs = sample(model, prompts, SamplingSpec(max_tokens=10, ignore_eos=True, logprobs=True), set(), 0, gens)
    batch.tensors["responses"] = torch.tensor([o.token_ids for o in outs])
    batch.tensors["input_ids"] = torch.cat([batch.tensors["prompts"], batch.tensors["responses"]], dim=1)
    batch.tensors["response_mask"] = torch.ones(len(outs), 10, dtype=torch.long)
    batch.tensors["attention_mask"][:, 8:] = 1
    batch.tensors["position_ids"] = (batch.tensors["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    actor = harness.compute_log_prob(batch)
    rollout = torch.tensor([o.log_probs for o in outs])
    diff = (actor - rollout).abs().max().item()
    print(f"max |rollout log-prob - actor log-prob| = {diff:.2e}")
    assert diff < 1e-4
