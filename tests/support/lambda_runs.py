"""λ-GRPO updates on verl's real actor worker (FSDP2 engine on the cpu platform), in this process or as one rank
of a gloo data-parallel group: ``python lambda_runs.py '<json spec>'`` prints the result as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("VERL_PLATFORM", "cpu")

import torch
from verl.utils import tensordict_utils as tu

from verl_lambda import lambda_grpo
from verl_lambda.cpu.harness import ActorHarness, dp_shard, free_port, init_process_group, make_batch
from verl_lambda.ops.length_weights import weights_and_slope


def spec_batch(spec: dict):
    batch = make_batch(vocab_size=40, seed=spec.get("seed", 0), **spec["batch"])
    if spec.get("shuffle_seed") is not None:  # scatter every group over ranks and micro-batches
        perm = torch.randperm(len(batch), generator=torch.Generator().manual_seed(spec["shuffle_seed"]))
        batch = batch.select(perm)
    return batch


def run(spec: dict, rank: int = 0, world_size: int = 1) -> dict:
    """Run ``spec["steps"]`` updates of the same batch; report losses, λ and what the loss saw, per step."""
    harness = ActorHarness(spec["model_dir"], spec["overrides"])
    batch = spec_batch(spec)
    if spec.get("on_policy"):
        batch.tensors["old_log_probs"] = harness.compute_log_prob(batch)
    shard = dp_shard(batch, rank, world_size)
    steps = []
    for _ in range(spec["steps"]):
        td = harness.input_for_update(shard, global_batch_size=len(batch), mini_batch_size=spec.get("mini_batch"))
        metrics = tu.get(harness.worker.update_actor(td), "metrics")
        state = lambda_grpo.lambda_state(harness.training_worker)
        record = {
            "pg_loss": [float(v) for v in metrics["actor/pg_loss"]],
            "grad_norm": [float(v) for v in metrics["grad_norm"]],
        }
        if state is not None:
            record.update(
                {
                    "lambda": state.value.item(),
                    "lambda_repr": state.value.item().hex(),
                    "lambda_grad": metrics["lambda_grpo/lambda_grad"][0],
                    "uids": list(shard.uids),
                    "lengths": shard.tensors["response_mask"].sum(-1).tolist(),
                    # f at λ = weights_at from the group table and the indices this rank's loss received
                    "weights_seen": weights_and_slope(
                        *state.groups,
                        td[lambda_grpo.GROUP_INDEX_KEY],
                        td[lambda_grpo.SELF_INDEX_KEY],
                        spec.get("weights_at", 1.0),
                    )[0].tolist(),
                }
            )
        steps.append(record)
    result = {"rank": rank, "steps": steps, "param_sum": float(harness.flat_params().double().sum())}
    if spec.get("checkpoint_root"):  # a separate folder per rank, as on clusters with node-local checkpoints
        folder = os.path.join(spec["checkpoint_root"], f"rank{rank}", "actor")
        harness.worker.save_checkpoint(folder, global_step=len(steps))
        resumed = ActorHarness(spec["model_dir"], spec["overrides"])
        resumed.worker.load_checkpoint(folder)
        result["saved"] = lambda_state_digest(lambda_grpo.lambda_state(harness.training_worker))
        result["loaded"] = lambda_state_digest(lambda_grpo.lambda_state(resumed.training_worker))
        result["files"] = sorted(os.listdir(folder))
    return result


def lambda_state_digest(state) -> dict:
    """λ and every tensor of its optimizer state, as exact hex strings."""
    optimizer = state.optimizer.state_dict()["state"][0]
    return {
        "lambda": state.value.item().hex(),
        **{
            key: [v.hex() for v in torch.as_tensor(value).double().view(-1).tolist()]
            for key, value in optimizer.items()
        },
    }


def launch_ranks(run_spec: dict, world_size: int, timeout: float = 240) -> list[dict]:
    """Run ``run_spec`` as ``world_size`` real gloo ranks (one process each); their results in rank order."""
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = dict(
            os.environ,
            RANK=str(rank),
            WORLD_SIZE=str(world_size),
            MASTER_PORT=str(port),
            MASTER_ADDR="127.0.0.1",
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, json.dumps(run_spec)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    results = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, out[-3000:]
            results.append(json.loads(out.split("RESULT ", 1)[1]))
    finally:
        for proc in procs:
            proc.kill()
    return results


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    init_process_group(rank, world_size, int(os.environ["MASTER_PORT"]))
    result = run(spec, rank, world_size)
    print("RESULT " + json.dumps(result), flush=True)
