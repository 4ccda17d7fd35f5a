"""The docs cannot drift: generated pages are current, quoted numbers match their committed data, links resolve.

Fast (no verl run): each test reads committed files only. ``bash scripts/docs.sh`` then builds the site with
``mkdocs build --strict``, which fails on broken links and anchors inside docs/.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import itertools
import json
import re
import statistics
import sys
from pathlib import Path

import pytest

from verl_lambda.metrics import read_metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
STUDY = DOCS / "study"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen_config = _script("gen_config_reference")
demo_summary = _script("demo_summary")


# --- the configuration reference -------------------------------------------------------------------------------------


def test_configuration_page_is_generated_from_the_current_docstrings():
    page = (DOCS / "configuration.md").read_text()
    assert page == gen_config.render(), "docs/configuration.md is stale: run python scripts/gen_config_reference.py"


def test_configuration_page_lists_every_option_with_its_default():
    from verl_lambda.config import GRPOLambdaConfig, LambdaGRPOConfig

    page = (DOCS / "configuration.md").read_text()
    for cls in (LambdaGRPOConfig, GRPOLambdaConfig):
        for field in dataclasses.fields(cls):
            row = next(
                (line for line in page.splitlines() if re.match(rf"\| (`\w+`, )*`{field.name}`[ ,]", line)), None
            )
            assert row is not None, (cls.__name__, field.name)
            assert f"| `{gen_config.default_text(field.default)}` |" in row, row
            assert row.rstrip().endswith("|") and row.split("|")[-2].strip(), f"no source: {row}"
    assert "| `r` | `1/9` |" in page
    assert "```text\nz_i = (L_i - mean L) / std L" in page  # the math survives as a block


def test_the_generator_refuses_an_undocumented_field_or_an_entry_without_source():
    @dataclasses.dataclass
    class Options:
        """Options.

        Attributes:
            a: documented. Source: paper.
        """

        PREFIX = "x"
        a: int = 1
        b: int = 2

    _, entries = gen_config.split_docstring(Options.__doc__.replace("\n        ", "\n"))
    with pytest.raises(ValueError, match=r"without an Attributes entry \['b'\]"):
        gen_config.table(Options, entries)
    with pytest.raises(ValueError, match=r"no 'Source: \.\.\.'"):
        gen_config.table(Options, {"a": "documented.", "b": "too. Source: ours."})
    assert gen_config.default_text(1.0 / 9.0) == "1/9"
    assert gen_config.default_text(None) == "null" and gen_config.default_text(False) == "false"


# --- links -----------------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _github_slug(heading: str) -> str:
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_github_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_every_relative_link_in_the_readme_points_to_an_existing_file_and_heading():
    links = _relative_links(ROOT / "README.md")
    assert len(links) >= 10  # the README links into docs/
    for link in links:
        target, _, anchor = link.partition("#")
        path = (ROOT / target).resolve()
        assert path.exists(), f"README.md links to {link}, which does not exist"
        if anchor:
            assert anchor in _anchors(path), f"README.md links to {link}: no such heading in {target}"


def test_relative_links_in_docs_point_to_existing_files():
    pages = [p for p in DOCS.rglob("*.md") if "runs" not in p.relative_to(DOCS).parts]
    for page in pages:
        for link in _relative_links(page):
            target = link.partition("#")[0]
            assert (page.parent / target).resolve().exists(), f"{page.relative_to(ROOT)} links to {link}"


def test_the_link_checks_catch_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A heading\n\n[ok](page.md#a-heading) [gone](missing.md) [web](https://example.org)\n")
    assert _relative_links(page) == ["page.md#a-heading", "missing.md"]
    assert "a-heading" in _anchors(page)
    assert not (tmp_path / "missing.md").exists()


def test_the_mkdocs_nav_lists_every_page_and_only_existing_ones():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def files(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from files(value) if isinstance(value, list) else [value]

    listed = list(files(config["nav"]))
    for page in listed:
        assert (DOCS / page).exists(), f"mkdocs.yml lists {page}, which does not exist"
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "runs" not in p.relative_to(DOCS).parts}
    assert pages == set(listed), pages ^ set(listed)
    assert config["strict"] is True and config["site_dir"] == "build/site"


def test_ci_builds_the_docs_after_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/docs.sh" in ci and ci.index("bash scripts/test.sh") < ci.index("bash scripts/docs.sh")


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


# --- the demo's numbers ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_runs():
    runs = demo_summary.load_summaries()
    assert len(runs) >= 1, "no committed demo summaries in docs/data/demo"
    return runs


def test_the_demo_paragraphs_are_rendered_from_the_committed_summaries(demo_runs):
    block = demo_summary.wrap(demo_summary.paragraph(demo_runs))
    for target in demo_summary.TARGETS:
        text = target.read_text()
        assert demo_summary.rendered(text, block) == text, (
            f"{target.relative_to(ROOT)}: the demo's numbers differ from docs/data/demo/*.json: "
            "run python scripts/demo_summary.py render"
        )


def test_a_changed_summary_changes_the_paragraph(demo_runs):
    changed = [dict(demo_runs[0], final_lambda=demo_runs[0]["final_lambda"] + 1.0), *demo_runs[1:]]
    assert demo_summary.paragraph(changed) != demo_summary.paragraph(demo_runs)


def test_each_summary_agrees_with_its_per_step_series(demo_runs):
    for run in demo_runs:
        series = run["per_step"]
        lambdas, rewards, lengths, gaps = series["lambda"], series["reward"], series["length"], series["length_gap"]
        assert run["steps"] == len(lambdas) == len(rewards) == len(lengths) == len(gaps) == len(series["lambda_grad"])
        assert run["final_lambda"] == pytest.approx(lambdas[-1], abs=1e-4)
        assert run["peak_lambda"] == pytest.approx(max(lambdas), abs=1e-4)
        assert run["lowest_lambda"] == pytest.approx(min(lambdas), abs=1e-4)
        assert lambdas[run["peak_lambda_step"] - 1] == max(lambdas)
        assert lambdas[run["lowest_lambda_step"] - 1] == min(lambdas)
        assert run["reward_first10_mean"] == pytest.approx(statistics.fmean(rewards[:10]), abs=1e-3)
        assert run["reward_last10_mean"] == pytest.approx(statistics.fmean(rewards[-10:]), abs=1e-3)
        assert run["length_last10_mean"] == pytest.approx(statistics.fmean(lengths[-10:]), abs=1e-2)
        assert run["length_gap_first10_mean"] == pytest.approx(statistics.fmean(gaps[:10]), abs=1e-2)
        assert run["length_gap_last10_mean"] == pytest.approx(statistics.fmean(gaps[-10:]), abs=1e-2)
        grads, corrs = series["lambda_grad"], series["length_reward_corr"]
        assert run["lambda_grad_nonzero_steps"] == sum(g != 0 for g in grads)
        assert run["lambda_grad_above_1e-4_steps"] == sum(abs(g) > 1e-4 for g in grads)
        followed = [demo_summary.follows(g, c) for g, c in zip(grads, corrs, strict=True)]
        assert run["lambda_grad_follows_steps"] == sum(f is True for f in followed)
        assert run["length_reward_related_steps"] == sum(f is not None for f in followed)
        assert run["rollout_probs_diff_max"] == max(series["rollout_probs_diff_max"])
        assert re.match(r"(OUT=\S+ )?bash scripts/demo_cpu.sh", run["command"]) and re.match(
            r"\d{4}-\d\d-\d\d$", run["date"]
        )


def test_the_length_reward_sign_rule():
    assert demo_summary.follows(-0.01, 0.4) and demo_summary.follows(0.02, -0.3)  # λ rises where longer earns more
    assert demo_summary.follows(0.01, 0.4) is False and demo_summary.follows(-0.01, -0.4) is False
    assert demo_summary.follows(0.01, None) is None and demo_summary.follows(0.0, 0.5) is None
    groups = {"a": [(3, 0.1), (5, 0.3), (7, 0.5)], "b": [(4, 1.0), (4, 1.0)], "c": [(2, 0.9), (6, 0.1)]}
    assert demo_summary.length_reward_corr(groups) == pytest.approx((1.0 - 1.0) / 2)  # b has no relation
    assert demo_summary.length_reward_corr({"b": [(4, 1.0), (4, 0.5)]}) is None


def test_what_the_docs_say_to_expect_from_the_demo_holds_in_every_committed_run(demo_runs):
    """The statements of docs/index.md, "What to expect from λ", checked run by run."""
    for run in demo_runs:
        series, name, steps = run["per_step"], run["command"], run["steps"]
        corrs, lambdas = series["length_reward_corr"], series["lambda"]
        assert sum(c is not None and c < 0 for c in corrs) >= 43, f"{name}: shorter earns more in most steps"
        assert all(v < 0 for v in lambdas[3:]) and -0.45 < lambdas[-1] < -0.3, f"{name}: λ falls, below 0 from step 4"
        assert run["lambda_grad_follows_steps"] >= 0.9 * run["length_reward_related_steps"], (
            f"{name}: λ's gradient follows the length-reward relation"
        )
        assert run["length_gap_last10_mean"] <= 1.0, f"{name}: lengths settle within a token of the targets"
        assert run["length_last10_mean"] <= 8.0, f"{name}: lengths settle far below the 32-token cap"
        assert max(series["clip_ratio"]) <= 0.2, f"{name}: at most a fifth of a step's responses reach the cap"
        assert run["lambda_grad_above_1e-4_steps"] == steps, f"{name}: λ's gradient is above 1e-4 in every step"
        assert max(abs(b - a) for a, b in zip([0.0, *lambdas], lambdas, strict=False)) <= 0.012, (
            f"{name}: λ moves about 0.01 a step"
        )
        assert max(series["rollout_probs_diff_max"]) < 1e-4, f"{name}: vLLM gets the actor's weights every step"


# --- the study's numbers ---------------------------------------------------------------------------------------------


def _signed(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f}".replace("-", "−")


def _interval(stats, digits: int = 3) -> str:
    mean, low, high = stats
    return f"{_signed(mean, digits)} [{_signed(low, digits)}, {_signed(high, digits)}]"


@functools.cache  # the claims read most runs several times
def _records(task: str, arm: str, seed: int) -> list[dict]:
    return read_metrics(STUDY / "runs" / task / arm / f"seed{seed}" / "metrics.jsonl", missing_ok=False)


def _final(records: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in records[-5:])


LAMBDA, GRAD, CORR = "actor/lambda_grpo/lambda", "actor/lambda_grpo/lambda_grad", "actor/lambda_grpo/weight_length_corr"
SHARE, W_MIN, W_MAX = (
    "actor/lambda_grpo/max_weight_share",
    "actor/lambda_grpo/weight_min",
    "actor/lambda_grpo/weight_max",
)
REWARD, GRAD_NORM, CLAMPED = "critic/score/mean", "actor/grad_norm", "actor/grpo_lambda/clamped_adv_frac"
CHAIN = ("chain-long", "chain-short")
LR_ARMS = {"0.01": "lambda_grpo", "0.05": "lambda_grpo_lr0.05", "0.2": "lambda_grpo_lr0.2"}
ABLATION = (
    "GRPO-λ − GRPO (total)", "trace (main effect)", "clamp (main effect)", "trace × clamp (interaction)",
    "GRPO at GRPO-λ's step − GRPO", "GRPO-λ − GRPO at its step", "GRPO-λ both − recent",
)  # fmt: skip


def _range(values, digits: int = 3) -> str:
    return f"{_signed(min(values), digits)} to {_signed(max(values), digits)}"


def _span(low: float, high: float, form: str) -> str:
    """``low–high``, or one value where both print alike."""
    return f"{low:{form}}" if f"{low:{form}}" == f"{high:{form}}" else f"{low:{form}}–{high:{form}}"


def study_claims() -> list[str]:
    """Every measured number of docs/study/README.md, formatted as the page quotes it, from the committed data."""
    results = json.loads((STUDY / "results.json").read_text())

    def comparison(question: str, task: str, name: str) -> dict:
        return next(c for c in results[question]["tasks"][task]["comparisons"] if c["name"] == name)

    def effect(question: str, task: str, name: str) -> str:
        c = comparison(question, task, name)
        return f"{name}: {_interval((c['effect'], c['low'], c['high']))} (Holm p = {c['p_holm']:.3f})"

    def finals(question: str, task: str, labels: dict[str, str]) -> str:
        arms = results[question]["tasks"][task]["arms"]
        return ", ".join(f"{label} {arms[name]['final_reward'][0]:.3f}" for name, label in labels.items())

    claims = []
    for question in results.values():  # "resolved": the simultaneous interval excludes 0, equivalently Holm p < 0.05
        for c in (c for task in question["tasks"].values() for c in task["comparisons"]):
            assert (c["low"] > 0 or c["high"] < 0) == (c["p_holm"] < 0.05), c["name"]
    # what every run shares: on-policy updates (PPO's clip never binds), the loss in float32
    every = [read_metrics(path, missing_ok=False) for path in STUDY.glob("runs/chain-*/*/seed*/metrics.jsonl")]
    assert len(every) == 102 and all(len(r) == 30 for r in every)
    assert all(x["actor/pg_clipfrac"] == 0 for r in every for x in r), "the clip never binds"
    assert all(x["actor/cpu/loss_autocast_bits"] == 32 for r in every for x in r), "the loss ran in float32"
    summaries = [json.loads(p.read_text()) for p in STUDY.glob("runs/chain-*/*/seed*/summary.json")]
    seconds, memory = [w["wall_s"] for w in summaries], [w["peak_rss_gb"] for w in summaries]
    claims.append(f"{len(every)} runs of 30 steps")
    claims.append(
        f"{sum(seconds) / 60:.0f} min for {len(summaries)} runs ({min(seconds):.0f}–{max(seconds):.0f} s each)"
    )
    claims.append(f"peak resident memory {_span(min(memory), max(memory), '.1f')} GB")

    # the ablation
    labels = {"grpo": "GRPO", "grpo_clamp": "GRPO + clamp", "grpo_lambda_noclamp": "GRPO-λ without the clamp",
              "grpo_lambda": "GRPO-λ"}  # fmt: skip
    for task in CHAIN:
        claims += [effect("ablation", task, name) for name in ABLATION]
        claims.append(f"final reward: {finals('ablation', task, labels)}")
        total = comparison("ablation", task, "GRPO-λ − GRPO (total)")["effect"]
        parts = [comparison("ablation", task, f"{f} (main effect)")["effect"] for f in ("trace", "clamp")]
        assert abs(sum(parts) - total) < 1e-9, "the two main effects add up to the total"
        matched = list(results["ablation"]["tasks"][task]["matched"]["grpo_matched"].values())
        assert len(matched) == 5 and all(m == matched[0] for m in matched), "every matched seed ran at one lr"
        m = matched[0]
        claims.append(
            f"GRPO-λ's median update norm was {m['update_norm']['grpo_lambda']:.3f} against GRPO's "
            f"{m['update_norm']['grpo']:.3f} (ratio {m['ratio']:.2f}), so GRPO at GRPO-λ's step ran at learning rate "
            f"{m['lr']:.5f}"
        )
        runs = {a: [_records(task, a, s) for s in range(5)] for a in labels}
        assert all(x["actor/grpo_lambda/trace_mean"] == 0 for r in runs["grpo_lambda"] for x in r), "the trace is 0"
        over = {a: statistics.fmean(x[GRAD_NORM] > 1.0 for r in rs for x in r) * 100 for a, rs in runs.items()}
        claims.append(
            f"gradient norm exceeded 1.0 in {over['grpo']:.0f}% of GRPO's steps, {over['grpo_lambda']:.0f}% of "
            f"GRPO-λ's and {over['grpo_lambda_noclamp']:.0f}% of GRPO-λ's without the clamp"
        )
        clamped = {
            a: statistics.fmean(x[CLAMPED] for r in runs[a] for x in r) * 100 for a in ("grpo_clamp", "grpo_lambda")
        }
        claims.append(
            f"clamp acted on {clamped['grpo_lambda']:.0f}% of GRPO-λ's tokens and {clamped['grpo_clamp']:.0f}% of "
            "GRPO + clamp's"
        )
    long_total, short_total = (comparison("ablation", t, "GRPO-λ − GRPO (total)") for t in CHAIN)
    for name in ("GRPO-λ − GRPO (total)", "trace (main effect)", "clamp (main effect)"):
        assert comparison("ablation", "chain-short", name)["effect"] > 0, "chain-short points the same way"
    for name in labels:
        long, short = (results["ablation"]["tasks"][t]["arms"][name]["final_reward"][0] for t in CHAIN)
        assert short < long, "chain-short's rewards stay lower"
    assert long_total["low"] > 0 and short_total["low"] < 0 < short_total["high"], "shares on chain-long only"
    trace = comparison("ablation", "chain-long", "trace (main effect)")
    assert trace["low"] > 0 and comparison("ablation", "chain-long", "clamp (main effect)")["low"] < 0
    claims.append(f"{trace['effect'] / long_total['effect'] * 100:.0f}% of the total")
    matched_diffs = [
        _final(_records("chain-short", "grpo_matched", s), REWARD) - _final(_records("chain-short", "grpo", s), REWARD)
        for s in range(5)
    ]
    claims.append(f"per seed from {_range(matched_diffs)}")

    # λ at a size where it matters
    for task in CHAIN:
        for lr, name in LR_ARMS.items():
            rs = [_records(task, name, s) for s in range(3)]
            lambdas = [r[-1][LAMBDA] for r in rs]
            assert all(v < 0 for v in lambdas), "λ fell in every run"
            alive = [sum(abs(x[GRAD]) > 1e-4 for x in r) for r in rs]
            low, high = min(x[W_MIN] for r in rs for x in r), max(x[W_MAX] for r in rs for x in r)
            share = max(x[SHARE] for r in rs for x in r)
            claims.append(
                f"λ lr {lr}: λ ended at {_range(lambdas)}, weights {low:.2f}–{high:.2f}, largest share {share:.2f}, "
                f"gradient above 1e-4 in {_span(min(alive), max(alive), 'd')} of 30 steps"
            )
            claims.append(effect("lambda_lr", task, f"λ-GRPO (λ lr {lr}) − GRPO"))
        lambdas = [[0.0] + [x[LAMBDA] for x in _records(task, name, s)] for name in LR_ARMS.values() for s in range(3)]
        fell = [sum(b < a for a, b in itertools.pairwise(v)) for v in lambdas]
        claims.append(f"in {_span(min(fell), max(fell), 'd')} of the 30 steps per run")
        highs = [max(v[1:]) for v in lambdas]
        if task == "chain-long":
            claims.append(f"its highest value {_range(highs)}")
        else:
            assert all(h < 0 for h in highs), "on chain-short λ fell from the first step"
        corr = [
            statistics.fmean(x[CORR] for x in _records(task, name, s) if x[W_MIN] != x[W_MAX])
            for name in LR_ARMS.values()
            for s in range(3)
        ]
        claims.append(f"weight–length correlation averaged {_range(corr, 2)} per run")
    for task, sign in (("chain-long", 1), ("chain-short", -1)):
        assert all(sign * c["effect"] > 0 for c in results["lambda_lr"]["tasks"][task]["comparisons"]), "directions"
    holm = [c["p_holm"] for t in CHAIN for c in results["lambda_lr"]["tasks"][t]["comparisons"]]
    claims.append(f"Holm p ≥ {min(holm):.3f}")

    # λ-GRPO against GRPO and DAPO
    labels = {"grpo": "GRPO", "lambda_grpo": "λ-GRPO", "dapo_token_mean": "DAPO (token-mean)",
              "dapo_clip_higher": "DAPO (clip-higher)"}  # fmt: skip
    noise = {}
    for task in CHAIN:
        claims += [
            effect("dapo", task, n) for n in ("λ-GRPO − GRPO", "λ-GRPO − DAPO (token-mean)", "DAPO (token-mean) − GRPO")
        ]
        claims.append(f"final reward: {finals('dapo', task, labels)}")
        noise[task] = max(
            abs(
                _final(_records(task, "dapo_clip_higher", s), REWARD)
                - _final(_records(task, "dapo_token_mean", s), REWARD)
            )
            for s in range(5)
        )
    dapo_finals = {t: {a: v["final_reward"][0] for a, v in results["dapo"]["tasks"][t]["arms"].items()} for t in CHAIN}
    long = dapo_finals["chain-long"]
    assert long["grpo"] < long["lambda_grpo"] < min(long["dapo_token_mean"], long["dapo_clip_higher"]), "between"
    short = dapo_finals["chain-short"].values()
    assert max(short) - min(short) < 0.05, "chain-short's four arms end within 0.05"
    first_losses = [
        abs(
            _records(t, "dapo_clip_higher", s)[0]["actor/pg_loss"]
            - _records(t, "dapo_token_mean", s)[0]["actor/pg_loss"]
        )
        for t in CHAIN
        for s in range(5)
    ]
    assert max(first_losses) < 1e-8, "the two DAPO variants' first losses agree to within 1e-8"
    claims.append(
        f"by up to {noise['chain-long']:.3f} per seed on `chain-long` and {noise['chain-short']:.3f} on `chain-short`"
    )
    holm = [c["p_holm"] for t in CHAIN for c in results["dapo"]["tasks"][t]["comparisons"]]
    claims.append(f"(Holm p ≥ {min(holm):.3f})")
    return claims


def test_the_study_page_quotes_its_committed_data():
    page = " ".join((STUDY / "README.md").read_text().split())
    missing = [claim for claim in study_claims() if claim not in page]
    assert not missing, "docs/study/README.md disagrees with results.json / runs/:\n" + "\n".join(missing)


def test_choosing_lambda_lr_quotes_the_study():
    page = " ".join((DOCS / "reproduce" / "choosing-lambda-lr.md").read_text().split())
    runs = {lr: [_records(t, arm, s) for t in CHAIN for s in range(3)] for lr, arm in LR_ARMS.items()}
    ends = {lr: [r[-1][LAMBDA] for r in rs] for lr, rs in runs.items()}
    quoted = ", ".join(f"{_range(ends[lr], 2)} at {'lr ' if lr == '0.01' else ''}{lr}" for lr in ("0.01", "0.05"))
    assert quoted.replace(", ", " (bound 0.3), ", 1) in page
    rs = runs["0.2"]
    low, high = min(x[W_MIN] for r in rs for x in r), max(x[W_MAX] for r in rs for x in r)
    assert f"{_range(ends['0.2'], 2)} at 0.2 (bound 6); at 0.2 the weights spread to {low:.2f}–{high:.2f}" in page
    assert f"held up to {max(x[SHARE] for r in rs for x in r):.2f} of its weight" in page


def test_the_study_check_catches_a_changed_number():
    claims = study_claims()
    page = " ".join((STUDY / "README.md").read_text().split())
    quoted = next(c for c in claims if c.startswith("trace (main effect)"))
    changed = page.replace(quoted, quoted.replace("(Holm p = ", "(Holm p = 1"))
    assert changed != page and any(claim not in changed for claim in claims)


# --- the weight-share measurement ------------------------------------------------------------------------------------


def test_the_weight_share_numbers_match_their_data_file():
    rows = json.loads((DOCS / "data" / "weight_share.json").read_text())["rows"]
    page = " ".join((DOCS / "metrics.md").read_text().split())

    def share(lengths, group, lam):
        return next(r for r in rows if r["lengths"] == lengths and r["G"] == group and r["lambda"] == lam)

    quoted = f"(median share {share('lognormal', 8, 8.0)['share_median']:.2f} and "
    quoted += f"{share('lognormal', 16, 8.0)['share_median']:.2f})"
    assert quoted in page, quoted
    inside = [r for r in rows if abs(r["lambda"]) <= 5]
    top = re.search(r"median share stays ≤ ([\d.]+)", page)
    slope = re.search(r"median \|df/dλ\| stays between ([\d.]+) and ([\d.]+)", page)
    assert top and slope, "the bounds' sentence changed: update this test"
    assert max(r["share_median"] for r in inside) <= float(top.group(1)) < max(r["share_median"] for r in inside) + 0.01
    low, high = float(slope.group(1)), float(slope.group(2))
    assert low <= min(r["slope_median"] for r in inside) < low + 0.01
    assert max(r["slope_median"] for r in inside) <= high < max(r["slope_median"] for r in inside) + 1
    for group in (4, 8):
        assert all(share("uniform", group, lam)["slope_median"] < 3e-3 for lam in (-20.0, 20.0)), "collapsed by |λ|=20"
