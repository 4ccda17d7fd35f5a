"""Every piece of verl that verl-lambda's wrappers and accessors rely on, and a check that a verl still has it.

A verl version we have not tested is accepted only when each piece below exists with the shape the wrapper expects
(functions and methods with their leading parameters, class fields, registries). The check reads verl's source with
``ast``, without importing it: it runs inside ``import verl`` in every process, and must neither import verl's heavy
modules nor depend on their optional dependencies.

Layer 2 (foundations).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Internal:
    """One verl internal a wrapper relies on.

    Attributes:
        module: dotted module, e.g. ``verl.workers.engine_workers``.
        name: ``function``, ``CONSTANT``, ``Class``, ``Class.method`` or ``Class.field`` (a dataclass field, a class
            attribute, or an attribute a method assigns on ``self``).
        params: the leading parameters a function or method must take, in order (``self`` not counted).
        used_by: the wrapper or accessor that needs it (a function or class of a patch table's module, of
            ``verl_lambda.cpu.platform`` or of the accessors, ``verl_lambda.verl_access``).
    """

    module: str
    name: str
    params: tuple[str, ...] = ()
    used_by: str = ""

    def describe(self) -> str:
        call = f"({', '.join(self.params)})" if self.params else ""
        return f"{self.module}.{self.name}{call}"


# The algorithms (verl_lambda.patches, and the accessors of verl_lambda.verl_access).
ALGORITHM_INTERNALS = (
    Internal("verl.workers.config.actor", "ActorConfig.__post_init__", (), "_actor_post_init_with_lambda_modes"),
    Internal("verl.workers.config.actor", "ActorConfig.loss_agg_mode", (), "_actor_post_init_with_lambda_modes"),
    Internal("verl.workers.config.actor", "ActorConfig.policy_loss", (), "_check_actor_for_our_agg_mode"),
    Internal("verl.workers.config.actor", "ActorConfig.strategy", (), "_check_actor_for_our_agg_mode"),
    Internal("verl.workers.config.actor", "PolicyLossConfig.loss_mode", (), "_init_accepting_options"),
    Internal("verl.workers.config.critic", "CriticConfig.__post_init__", (), "_critic_post_init_refusing_lambda_grpo"),
    Internal("verl.workers.config.critic", "CriticConfig.loss_agg_mode", (), "_critic_post_init_refusing_lambda_grpo"),
    Internal(
        "verl.trainer.ppo.core_algos",
        "agg_loss",
        ("loss_mat", "loss_mask", "loss_agg_mode", "dp_size", "batch_num_tokens", "global_batch_size"),
        "_agg_loss_with_lambda_grpo",
    ),
    Internal(
        "verl.trainer.ppo.core_algos",
        "agg_loss",
        ("loss_mat", "loss_mask", "loss_agg_mode", "dp_size", "batch_num_tokens", "global_batch_size"),
        "_agg_loss_with_group_mean",
    ),
    Internal("verl.trainer.ppo.core_algos", "POLICY_LOSS_REGISTRY", (), "patch_core_algos"),
    Internal("verl.trainer.ppo.core_algos", "register_policy_loss", ("name",), "patch_core_algos"),
    Internal(
        "verl.workers.utils.losses",
        "ppo_loss",
        ("config", "model_output", "data", "dp_group"),
        "_ppo_loss_with_length_weights",
    ),
    Internal(
        "verl.workers.utils.losses",
        "ppo_loss",
        ("config", "model_output", "data", "dp_group"),
        "_ppo_loss_with_group_mean",
    ),
    Internal("verl.workers.utils.losses", "get_policy_loss_fn", (), "_get_policy_loss_fn_weighted"),
    Internal(
        "verl.workers.engine_workers", "TrainingWorker.train_mini_batch", ("data",), "_train_mini_batch_with_groups"
    ),
    Internal("verl.workers.engine_workers", "TrainingWorker.train_batch", ("data",), "_train_batch_with_lambda_step"),
    Internal(
        "verl.workers.engine_workers",
        "TrainingWorker.train_mini_batch",
        ("data",),
        "_train_mini_batch_with_group_tokens",
    ),
    Internal("verl.workers.engine_workers", "TrainingWorker.train_batch", ("data",), "_train_batch_with_group_count"),
    Internal("verl.workers.engine_workers", "TrainingWorker.engine", (), "_train_batch_with_lambda_step"),
    Internal("verl.workers.engine_workers", "TrainingWorker.loss_fn", (), "actor_loss_config"),
    Internal(
        "verl.workers.engine_workers",
        "TrainingWorker.save_checkpoint",
        ("local_path", "hdfs_path", "global_step", "max_ckpt_to_keep"),
        "_save_checkpoint_with_lambda",
    ),
    Internal(
        "verl.workers.engine_workers",
        "TrainingWorker.load_checkpoint",
        ("local_path", "hdfs_path", "del_local_after_load"),
        "_load_checkpoint_with_lambda",
    ),
    Internal("verl.workers.engine.base", "BaseEngine.optimizer_step", (), "_optimizer_step_then_lambda"),
    Internal("verl.workers.engine.base", "BaseEngine.get_data_parallel_group", (), "_optimizer_step_then_lambda"),
    Internal("verl.workers.engine.fsdp.transformer_impl", "FSDPEngine.scaler", (), "loss_scaler"),
    Internal(
        "verl.trainer.ppo.rollout_corr_helper",
        "compute_rollout_correction_and_add_to_batch",
        ("batch", "rollout_corr_config"),
        "_rollout_correction_keeping_lengths",
    ),
    Internal("verl.trainer.ppo.ray_trainer", "RayPPOTrainer.__init__", (), "_trainer_init_with_lambda_base"),
    Internal("verl.trainer.ppo.v1.trainer_base", "PPOTrainer.__init__", (), "_trainer_init_with_lambda_base"),
    Internal(
        "verl.experimental.fully_async_policy.fully_async_trainer",
        "FullyAsyncTrainer.__init__",
        (),
        "_trainer_init_with_lambda_base",
    ),
    Internal(
        "verl.trainer.ppo.v1.trainer_base",
        "PPOTrainer._compute_advantage",
        ("batch", "metrics"),
        "_compute_advantage_marking_rows",
    ),
    Internal("verl.utils.tensordict_utils", "get", ("tensordict", "key", "default"), "sample_field"),
    Internal("verl.utils.tensordict_utils", "assign_non_tensor", ("tensor_dict",), "append_metrics"),
    Internal("verl.workers.config.actor", "ActorConfig.global_batch_info", (), "global_batch_info"),
    Internal("verl.utils.device", "get_device_name", (), "accelerator_device"),
    Internal("verl.utils.device", "get_device_id", (), "accelerator_device"),
)

# The CPU backend (verl_lambda.cpu.patches, verl_lambda.cpu.vllm_rollout, verl_lambda.cpu.platform).
CPU_BACKEND_INTERNALS = (
    Internal(
        "verl.workers.utils.losses",
        "ppo_loss",
        ("config", "model_output", "data", "dp_group"),
        "_ppo_loss_checking_autocast",
    ),
    Internal("verl.plugin.platform.platform_manager", "PlatformRegistry.register", ("platform",), "register_platform"),
    Internal("verl.plugin.platform.platform_manager", "PlatformRegistry.get", ("name",), "register_platform"),
    Internal("verl.plugin.platform.platform_base", "PlatformBase", (), "PlatformCPU"),
    Internal("verl.plugin.platform.platform_manager", "get_platform", (), "is_cpu_platform_selected"),
    Internal(
        "verl.utils.distributed",
        "initialize_global_process_group_ray",
        ("timeout_second", "backend"),
        "_process_group_on_gloo",
    ),
    Internal("verl.workers.engine.fsdp.transformer_impl", "CPUOffloadPolicy", (), "_offload_policy_without_pinning"),
    Internal("verl.workers.engine.fsdp.transformer_impl", "FSDPEngineWithLMHead", (), "patch_fsdp_engines"),
    Internal("verl.workers.engine.fsdp.transformer_impl", "FSDPEngineWithValueHead", (), "patch_fsdp_engines"),
    Internal("verl.workers.engine.base", "BaseEngine.train_batch", ("data", "loss_function"), "patch_fsdp_engines"),
    Internal(
        "verl.workers.engine.fsdp.transformer_impl",
        "FSDPEngine.is_mp_src_rank_with_outputs",
        (),
        "_train_batch_reporting_update_norm",
    ),
    Internal("verl.workers.engine.base", "EngineRegistry._engines", (), "patch_fsdp_engines"),
    Internal("verl.workers.engine.base", "EngineRegistry.register", ("model_type", "backend"), "patch_fsdp_engines"),
    Internal("verl.utils.attention_utils", "_get_attention_functions", (), "patch_attention_utils"),
    Internal("verl.utils.device", "auto_set_device", ("config",), "patch_auto_set_device"),
    Internal(
        "verl.workers.rollout.vllm_rollout.bucketed_weight_transfer",
        "BucketedWeightReceiver.receive_weights",
        ("on_bucket_received",),
        "_receive_owned_copies",
    ),
    Internal(
        "verl.workers.rollout.vllm_rollout.bucketed_weight_transfer",
        "BucketedWeightSender._init_socket",
        (),
        "_init_socket_with_timeout",
    ),
    Internal(
        "verl.workers.rollout.vllm_rollout.vllm_rollout",
        "ServerAdapter._execute_method",
        ("method", "non_block"),
        "_execute_method_remembering_receiver",
    ),
    Internal(
        "verl.workers.rollout.vllm_rollout.vllm_rollout",
        "ServerAdapter.update_weights",
        ("weights",),
        "_update_weights_naming_receiver_failure",
    ),
    Internal("verl.workers.rollout.base", "_ROLLOUT_REGISTRY", (), "patch_rollout_registry"),
    Internal("verl.workers.rollout.replica", "RolloutReplicaRegistry._registry", (), "patch_replica_registry"),
    Internal(
        "verl.workers.rollout.replica", "RolloutReplicaRegistry.register", ("name", "loader"), "patch_replica_registry"
    ),
)

INTERNALS = ALGORITHM_INTERNALS + CPU_BACKEND_INTERNALS


def _params(function: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    names = [arg.arg for arg in (*function.args.posonlyargs, *function.args.args)]
    if method and names and names[0] in ("self", "cls"):
        names = names[1:]
    return names + [arg.arg for arg in function.args.kwonlyargs]


def _self_attributes(cls: ast.ClassDef) -> set[str]:
    """Attributes assigned as ``self.x = ...`` (or annotated) in the class's methods."""
    names = set()
    for node in ast.walk(cls):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                names.add(target.attr)
    return names


def _top_level(tree: ast.Module) -> dict[str, ast.AST]:
    """Names a module defines or imports at its top level (or under a top-level ``if``/``try``)."""
    found: dict[str, ast.AST] = {}

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found.setdefault(node.name, node)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found.setdefault(target.id, node)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                found.setdefault(node.target.id, node)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    found.setdefault(alias.asname or alias.name.split(".")[0], node)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(node.orelse)

    visit(tree.body)
    return found


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _source(verl_root: Path, module: str) -> Path | None:
    relative = Path(*module.split(".")[1:])
    for candidate in (verl_root / relative.with_suffix(".py"), verl_root / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def problem(verl_root: Path, internal: Internal, trees: dict[str, ast.Module | None] | None = None) -> str | None:
    """Why ``internal`` is missing or changed in the verl whose package folder is ``verl_root``; None if it is fine.

    ``trees`` caches parsed modules across calls of one check.
    """
    trees = {} if trees is None else trees
    if internal.module not in trees:
        path = _source(verl_root, internal.module)
        trees[internal.module] = _parse(path) if path is not None else None
    tree = trees[internal.module]
    if tree is None:
        return f"{internal.describe()}: module {internal.module} not found"
    owner_name, _, member = internal.name.partition(".")
    node = _top_level(tree).get(owner_name)
    if node is None:
        return f"{internal.describe()}: {owner_name} not found in {internal.module}"
    if member:
        if not isinstance(node, ast.ClassDef):
            return f"{internal.describe()}: {owner_name} is no longer a class"
        cls = node
        node = _top_level(ast.Module(body=cls.body, type_ignores=[])).get(member)
        if node is None:
            if internal.params or member not in _self_attributes(cls):
                return f"{internal.describe()}: {owner_name} has no {member}"
            return None
    if internal.params:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return f"{internal.describe()}: no longer a function"
        got = _params(node, method=bool(member))
        if tuple(got[: len(internal.params)]) != internal.params:
            return f"{internal.describe()}: its parameters are now ({', '.join(got)})"
    return None


def check(verl_root: Path, internals: tuple[Internal, ...] | None = None) -> list[str]:
    """Every missing or changed internal (default: ``INTERNALS``) of the verl whose package folder is ``verl_root``,
    with what needs it."""
    problems, trees = [], {}
    for internal in INTERNALS if internals is None else internals:
        reason = problem(Path(verl_root), internal, trees)
        if reason is not None:
            problems.append(f"{reason} (needed by {internal.used_by})")
    return problems
