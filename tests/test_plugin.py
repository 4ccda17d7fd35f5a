"""The plugin is loaded by verl in every process, cheaply and idempotently, and never fails silently."""

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from verl_lambda import hooks, patches
from verl_lambda.cpu import patches as cpu_patches


def run_python(code: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


def test_entry_point_is_declared():
    names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert names.get("verl_lambda") == "verl_lambda.plugin"


def test_loaded_by_import_verl_and_cheap():
    result = run_python(
        """
        import sys, verl
        import verl_lambda.plugin as plugin
        assert plugin.LOAD_ERROR is None, plugin.LOAD_ERROR
        heavy = [m for m in ("verl.workers.engine_workers", "verl.workers.config", "verl.trainer.ppo.core_algos",
                             "verl_lambda.lambda_grpo", "verl_lambda.cpu.hf_rollout") if m in sys.modules]
        assert not heavy, heavy  # patches wait for their modules; nothing heavy is imported on load
        from verl.trainer.ppo import core_algos
        assert "grpo_lambda" in core_algos.POLICY_LOSS_REGISTRY
        assert core_algos.agg_loss.__wrapped__ is not None
        from verl.workers.utils import losses
        assert losses.agg_loss is core_algos.agg_loss  # names imported with `from ... import` see the wrapper
        print("OK")
        """
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.timeout(300)
@pytest.mark.e2e  # starts Ray
def test_loaded_in_ray_workers():
    result = run_python(
        """
        import os, ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

        def probe():
            import os, sys
            import verl
            from verl.trainer.ppo import core_algos
            from verl.workers.config import ActorConfig
            import verl_lambda.plugin as plugin
            return os.getpid(), plugin.LOAD_ERROR is None, "grpo_lambda" in core_algos.POLICY_LOSS_REGISTRY

        @ray.remote
        def task():
            return probe()

        @ray.remote
        class Actor:
            def check(self):
                return probe()

        results = [ray.get(task.remote()), ray.get(Actor.remote().check.remote())]
        assert all(r[0] != os.getpid() for r in results)  # really other processes
        assert all(r[1] and r[2] for r in results), results
        print("OK", results)
        """,
        timeout=240,
    )
    assert result.returncode == 0 and "OK" in result.stdout, (result.stdout + result.stderr)[-3000:]


def test_broken_registration_is_reported_loudly():
    result = run_python(
        """
        from verl_lambda import patches

        def patch_core_algos(module):
            raise ImportError("simulated breakage")

        patches.PATCHES["verl.trainer.ppo.core_algos"] = patch_core_algos
        import verl
        from verl.trainer.ppo import core_algos  # the hook fails here; verl keeps working
        from verl.workers.config import FSDPActorConfig
        FSDPActorConfig(strategy="fsdp", rollout_n=2, ppo_micro_batch_size_per_gpu=2)  # verl's own modes work
        for mode in ("lambda_grpo", "group-mean-token-mean"):
            try:
                FSDPActorConfig(strategy="fsdp", rollout_n=2, ppo_micro_batch_size_per_gpu=2, loss_agg_mode=mode)
            except RuntimeError as exc:
                print("REFUSED:", mode, exc)
        import verl_lambda.plugin as plugin
        print("LOAD_ERROR:", plugin.LOAD_ERROR)  # a patch that fails after load counts as a load failure
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ERROR" in result.stderr and "verl-lambda failed to load" in result.stderr
    assert "simulated breakage" in result.stderr
    for mode in ("lambda_grpo", "group-mean-token-mean"):
        assert f"REFUSED: {mode} verl-lambda is installed but failed to load" in result.stdout
    assert "simulated breakage" in result.stdout
    assert "LOAD_ERROR: patching verl.trainer.ppo.core_algos with patch_core_algos failed" in result.stdout


def test_a_plugin_whose_hooks_cannot_load_still_reports_it():
    """The failure guard lives in verl_lambda.hooks; when that module itself cannot be imported, the plugin still
    reports at ERROR and records the failure."""
    result = run_python(
        """
        import sys
        sys.modules["verl_lambda.hooks"] = None  # importing it now raises ImportError
        import verl
        import verl_lambda.plugin as plugin
        print("LOAD_ERROR:", plugin.LOAD_ERROR)
        try:
            plugin.assert_loaded()
        except RuntimeError as exc:
            print("RAISED:", exc)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verl-lambda failed to load, its modes are unavailable" in result.stderr
    assert "LOAD_ERROR: import of verl_lambda.hooks halted" in result.stdout
    assert "RAISED: verl-lambda failed to load: import of verl_lambda.hooks halted" in result.stdout


def fake_verl(tmp_path, edits: dict[str, tuple[str, str]]):
    """A copy of the installed verl's source with ``edits`` ({file: (old, new)}) applied, e.g. a renamed function."""
    import shutil

    import verl

    root = tmp_path / "verl"
    shutil.copytree(Path(verl.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for relative, (old, new) in edits.items():
        path = root / relative
        text = path.read_text()
        assert old in text, (relative, old)
        path.write_text(text.replace(old, new))
    return root


def test_tested_versions_are_accepted_and_have_every_internal():
    import verl

    from verl_lambda import capabilities

    assert hooks.check_verl() == verl.__version__ in hooks.TESTED_VERL_VERSIONS
    assert capabilities.check(Path(verl.__file__).parent) == []


def test_every_internal_names_the_wrapper_or_accessor_that_uses_it():
    """``used_by`` names a function or class of a patch table's module, of the cpu platform or of the accessors."""
    import inspect

    from verl_lambda import capabilities, verl_access
    from verl_lambda.cpu import platform, vllm_rollout

    modules = (patches, cpu_patches, vllm_rollout, platform, verl_access)
    for internal in capabilities.INTERNALS:
        owners = [m.__name__ for m in modules if inspect.getmodule(getattr(m, internal.used_by, None)) is m]
        assert len(owners) == 1, (internal.describe(), internal.used_by, owners)


def test_a_verl_with_a_renamed_or_removed_internal_fails_naming_each_piece(tmp_path):
    root = fake_verl(
        tmp_path,
        {
            "trainer/ppo/core_algos.py": ("def agg_loss(", "def aggregate_loss("),
            "workers/engine_workers.py": (
                "def save_checkpoint(self, local_path, hdfs_path=None",
                "def save(self, path, hdfs_path=None",
            ),
            "workers/utils/losses.py": (
                "def ppo_loss(config: ActorConfig, model_output",
                "def ppo_loss(cfg: ActorConfig, model_output",
            ),
        },
    )
    with pytest.raises(hooks.UnsupportedVerlVersion) as info:
        hooks.check_verl("0.10.0.dev0", str(root))
    message = str(info.value)
    assert "tested with verl 0.9.0, 0.9.1; the installed verl 0.10.0.dev0 lacks or changed 6 internal(s)" in message
    assert "verl.trainer.ppo.core_algos.agg_loss(loss_mat, loss_mask" in message and "agg_loss not found" in message
    assert "TrainingWorker.save_checkpoint(local_path, hdfs_path, global_step, max_ckpt_to_keep)" in message
    assert "ppo_loss(config, model_output, data, dp_group): its parameters are now (cfg, model_output" in message
    assert "(needed by _agg_loss_with_lambda_grpo)" in message and "(needed by _agg_loss_with_group_mean)" in message
    assert "(needed by _ppo_loss_checking_autocast)" in message  # ppo_loss: the CPU backend's wrapper relies on it too


def test_an_untested_verl_with_every_internal_loads_with_one_warning_unless_strict(tmp_path, caplog, monkeypatch):
    import verl

    root = str(Path(verl.__file__).parent)
    with caplog.at_level("WARNING", logger="verl_lambda"):
        assert hooks.check_verl("0.9.2", root) == "0.9.2"
    warnings = [r.getMessage() for r in caplog.records if r.name == "verl_lambda"]
    assert len(warnings) == 1 and "verl 0.9.2 is not a tested version (tested: 0.9.0, 0.9.1)" in warnings[0]
    monkeypatch.setenv(hooks.STRICT_VERSION_ENV, "1")
    with pytest.raises(hooks.UnsupportedVerlVersion, match="VERL_LAMBDA_STRICT_VERSION is set"):
        hooks.check_verl("0.9.2", root)


def test_unsupported_verl_applies_no_patch_and_names_the_missing_piece():
    result = run_python(
        """
        from verl_lambda import capabilities, hooks
        hooks.TESTED_VERL_VERSIONS = ("0.0.1",)   # pretend the installed verl is untested, and lacks one piece
        capabilities.INTERNALS += (capabilities.Internal("verl.trainer.ppo.core_algos", "agg_loss_v2", (), "a test"),)
        import verl
        from verl.trainer.ppo import core_algos
        assert not hasattr(core_algos.agg_loss, "__wrapped__")      # nothing was patched
        assert "grpo_lambda" not in core_algos.POLICY_LOSS_REGISTRY
        from verl.workers.config import FSDPActorConfig
        FSDPActorConfig(strategy="fsdp", rollout_n=2, ppo_micro_batch_size_per_gpu=2, loss_agg_mode="token-mean")
        try:
            FSDPActorConfig(strategy="fsdp", rollout_n=2, ppo_micro_batch_size_per_gpu=2, loss_agg_mode="lambda_grpo")
        except RuntimeError as exc:
            print("REFUSED:", exc)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verl-lambda was tested with verl 0.0.1; the installed verl 0.9" in result.stderr
    assert "verl.trainer.ppo.core_algos.agg_loss_v2: agg_loss_v2 not found" in result.stderr
    assert "REFUSED: verl-lambda is installed but failed to load" in result.stdout
    assert "agg_loss_v2" in result.stdout


def test_patches_are_idempotent():
    from verl.trainer.ppo import core_algos
    from verl.workers import engine_workers
    from verl.workers.config import actor

    wrapped = core_algos.agg_loss
    hooks.apply(methods=patches.PATCHES, backend=cpu_patches.PATCHES)
    patches.patch_core_algos(core_algos)
    patches.patch_actor_config(actor)
    patches.patch_engine_workers(engine_workers)
    assert core_algos.agg_loss is wrapped
    assert hooks.wrapped_by(actor.FSDPActorConfig.__init__) == ("_init_accepting_options.<locals>.make",)
    assert hooks.wrapped_by(engine_workers.TrainingWorker.train_batch) == (
        "_train_batch_with_lambda_step",
        "_train_batch_with_group_count",
    )
    assert hasattr(engine_workers.TrainingWorker.train_batch, "attrs_3141562937")  # verl's dispatch info kept


def test_module_switch_loads_it_without_entry_points():
    """For code shipped without an installed distribution: verl's own VERL_USE_EXTERNAL_MODULES switch."""
    import os

    env = dict(os.environ, VERL_USE_EXTERNAL_PLUGINS="none", VERL_USE_EXTERNAL_MODULES="verl_lambda.plugin")
    code = (
        "import verl; from verl.trainer.ppo import core_algos; "
        "assert 'grpo_lambda' in core_algos.POLICY_LOSS_REGISTRY; print('OK')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-2000:]
    env["VERL_USE_EXTERNAL_MODULES"] = ""
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    # with plugins disabled and no module switch, nothing registers grpo_lambda
    assert off.returncode != 0 and "AssertionError" in off.stderr, off.stderr[-2000:]


def test_the_node_check_reports_versions_internals_and_loading():
    import verl

    from verl_lambda import capabilities

    result = subprocess.run([sys.executable, "-m", "verl_lambda"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    total = len(capabilities.INTERNALS)
    assert f"verl {verl.__version__} " in result.stdout and ": tested" in result.stdout
    assert f"internals the wrappers rely on: {total}/{total} present" in result.stdout
    assert "entry point verl.plugins: verl_lambda.plugin" in result.stdout
    assert result.stdout.rstrip().endswith("are available")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("source", ["directory", "git"])
def test_installing_keeps_the_installed_verl(source, tmp_path):
    """pip resolves verl-lambda against the verl already installed (0.9.0 or 0.9.1 alike) and would install nothing
    but verl-lambda: no index is consulted, so any other install or upgrade would fail the resolution."""
    import verl

    root = Path(__file__).resolve().parent.parent
    target = str(root) if source == "directory" else f"git+file://{root}"
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation", "--quiet"]
    result = subprocess.run(
        [*command, "--report", str(report), target], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    import json

    installs = [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.loads(report.read_text())["install"]]
    assert [name for name, _ in installs] == ["verl-lambda"], installs
    assert verl.__version__ in ("0.9.0", "0.9.1")


def test_a_verl_that_ships_the_methods_gets_only_the_cpu_backend(tmp_path):
    """On a verl with the upstream series applied, lambda_grpo and grpo_lambda are verl's own: no algorithm wrapper."""
    import verl

    assert not hooks.methods_built_in(str(Path(verl.__file__).parent))
    core_algos = tmp_path / "trainer" / "ppo" / "core_algos.py"
    core_algos.parent.mkdir(parents=True)
    core_algos.write_text('@register_agg_loss("lambda_grpo")\ndef a(): ...\n')
    assert not hooks.methods_built_in(str(tmp_path))
    core_algos.write_text(core_algos.read_text() + '@register_policy_loss("grpo_lambda")\ndef b(): ...\n')
    assert hooks.methods_built_in(str(tmp_path))
    core_algos.write_text(
        core_algos.read_text().replace('("grpo_lambda")', '("grpo_lambda", takes_token_weights=True)')
    )
    assert hooks.methods_built_in(str(tmp_path))


def test_the_cpu_backends_loss_wrapper_passes_on_what_a_later_verl_adds(monkeypatch):
    """A verl that ships the methods passes ``ppo_loss(..., loss_params=...)``; the CPU backend's wrapper, installed
    on every verl, must pass on any argument it does not know (with and without the autocast check)."""
    import torch
    import verl.workers.utils.losses  # noqa: F401  (verl first: it loads the plugin, which imports the CPU backend)

    from verl_lambda.cpu import patches as cpu_patches

    seen = []

    def original(config, model_output, data, dp_group=None, loss_params=None):
        seen.append((dp_group, loss_params))
        return 0.0, {}

    wrapped = cpu_patches._ppo_loss_checking_autocast(original)
    monkeypatch.delenv(cpu_patches.CHECK_AUTOCAST_ENV, raising=False)
    wrapped(None, {}, None, "group", loss_params="params")
    monkeypatch.setenv(cpu_patches.CHECK_AUTOCAST_ENV, "fp32")
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    wrapped(None, {"log_probs": torch.zeros(1)}, None, dp_group="group", loss_params="params")
    assert seen == [("group", "params"), ("group", "params")]
