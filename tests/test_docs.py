"""The docs cannot drift: generated pages are current, quoted numbers match their committed data, links resolve.

Fast (no verl run): each test reads committed files only. ``bash scripts/docs.sh`` then builds the site with
``mkdocs build --strict``, which fails on broken links and anchors inside docs/.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import statistics
import sys
from pathlib import Path

import pytest

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


def _records(task: str, method: str, seed: int) -> list[dict]:
    lines = (STUDY / "runs" / task / method / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()
    return [{"step": json.loads(line)["step"], **json.loads(line)["data"]} for line in lines if line.strip()]


def _runs(task: str, method: str) -> list[list[dict]]:
    return [_records(task, method, seed) for seed in range(5)]


def _final(records: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in records[-5:])


LAMBDA, GRAD, CORR = "actor/lambda_grpo/lambda", "actor/lambda_grpo/lambda_grad", "actor/lambda_grpo/weight_length_corr"
REWARD, LENGTH = "critic/score/mean", "response_length/mean"


def study_claims() -> list[str]:
    """Every measured number of docs/study/README.md, formatted as the page quotes it, from the committed data."""
    results = json.loads((STUDY / "results.json").read_text())
    long, short = results["lengths-long"]["methods"], results["lengths-short"]["methods"]
    claims = [
        f"final reward {_interval(long['lambda_grpo']['vs_grpo']['final_reward'])}",
        f"AUC {_interval(long['lambda_grpo']['vs_grpo']['auc'])}",
        f"steps to threshold {_interval(long['lambda_grpo']['vs_grpo']['steps_to_threshold'], 1)}",
        f"On `lengths-short`: final reward {_interval(short['lambda_grpo']['vs_grpo']['final_reward'])}",
        f"AUC {_interval(long['grpo_lambda']['vs_grpo']['auc'])}",
        f"final reward {_interval(long['grpo_lambda']['vs_grpo']['final_reward'])} "
        f"({long['grpo_lambda']['final_reward'][0]:.3f} against {long['grpo']['final_reward'][0]:.3f})",
        f"steps to threshold {_interval(long['grpo_lambda']['vs_grpo']['steps_to_threshold'], 1)}, i.e. "
        f"{long['grpo_lambda']['steps_to_threshold'][0]:.1f} against {long['grpo']['steps_to_threshold'][0]:.1f} steps",
        f"AUC {_interval(long['combined']['vs_grpo']['auc'])}, "
        f"final {_interval(long['combined']['vs_grpo']['final_reward'])}",
        f"Reward against GRPO: {_interval(long['lambda_grpo_val']['vs_grpo']['final_reward'])}",
    ]
    runs = {(task, m): _runs(task, m) for task, m in [("lengths-long", m) for m in long] + [("lengths-short", "grpo")]}
    runs[("lengths-short", "lambda_grpo")] = _runs("lengths-short", "lambda_grpo")
    learners = ["lambda_grpo", "combined", "lambda_grpo_val"]
    finals = {m: [r[-1][LAMBDA] for r in runs[("lengths-long", m)]] for m in learners}
    short_finals = [r[-1][LAMBDA] for r in runs[("lengths-short", "lambda_grpo")]]
    assert all(v > 0 for m in learners for v in finals[m]) and all(v < 0 for v in short_finals)
    n_learners = sum(len(v) for v in finals.values())
    claims.append(f"λ rose in all {n_learners} runs that learn it")
    claims += [
        f"λ-GRPO: {_signed(min(finals['lambda_grpo']))} to {_signed(max(finals['lambda_grpo']))} after 30 steps",
        f"combined with GRPO-λ: {_signed(min(finals['combined']))} to {_signed(max(finals['combined']))}",
        f"validation signal: {_signed(min(finals['lambda_grpo_val']))} to {_signed(max(finals['lambda_grpo_val']))}",
        f"λ fell in all {len(short_finals)} runs, to {_signed(max(short_finals))} to {_signed(min(short_finals))}",
    ]

    def mean_over_runs(task, method, value):
        return statistics.fmean(value(r) for r in runs[(task, method)])

    corr_long = mean_over_runs("lengths-long", "lambda_grpo", lambda r: statistics.fmean(x[CORR] for x in r))
    corr_short = mean_over_runs("lengths-short", "lambda_grpo", lambda r: statistics.fmean(x[CORR] for x in r))
    claims.append(f"averaged {_signed(corr_long, 2)} on `lengths-long` and {_signed(corr_short, 2)} on `lengths-short`")

    def nonzero(task, method):
        return mean_over_runs(task, method, lambda r: sum(x[GRAD] != 0 for x in r))

    claims.append(
        f"non-zero in {nonzero('lengths-long', 'lambda_grpo'):.1f} of 30 steps on average on `lengths-long` and in "
        f"{nonzero('lengths-short', 'lambda_grpo'):.0f} of 30 on `lengths-short`"
    )
    claims.append(f"the gradient was non-zero in {nonzero('lengths-long', 'lambda_grpo_val'):.1f} of 30 steps")
    all_lambda_runs = [r for key, rs in runs.items() if key[1] in learners for r in rs] + runs[
        ("lengths-short", "lambda_grpo")
    ]
    largest = max(abs(x[LAMBDA]) for r in all_lambda_runs for x in r)
    assert largest < 0.22, "|λ| stayed below 0.22"

    def weights(rs):
        low = min(x["actor/lambda_grpo/weight_min"] for r in rs for x in r)
        return low, max(x["actor/lambda_grpo/weight_max"] for r in rs for x in r)

    short_rs = runs[("lengths-short", "lambda_grpo")]
    (long_low, long_high), (short_low, short_high) = (
        weights([r for m in learners for r in runs[("lengths-long", m)]]),
        weights(short_rs),
    )
    claims.append(
        f"stayed between {long_low:.2f} and {long_high:.2f} on `lengths-long` and between {short_low:.2f} and "
        f"{short_high:.2f} on `lengths-short`"
    )

    def final_mean(task, method, key):
        return mean_over_runs(task, method, lambda r: _final(r, key))

    claims.append(
        f"The final policy entropy was {final_mean('lengths-long', 'lambda_grpo', 'actor/entropy'):.2f} for λ-GRPO and "
        f"{final_mean('lengths-long', 'dapo', 'actor/entropy'):.2f} for DAPO (means over seeds of steps 26–30; GRPO "
        f"{final_mean('lengths-long', 'grpo', 'actor/entropy'):.2f})"
    )
    claims.append(
        f"final mean length was {final_mean('lengths-long', 'lambda_grpo', LENGTH):.1f} tokens for λ-GRPO and "
        f"{final_mean('lengths-long', 'grpo', LENGTH):.1f} for GRPO"
    )
    short_lengths = sorted(_final(r, LENGTH) for r in short_rs)
    assert all(7.5 <= v < 9.5 for v in short_lengths[:3]), "3 of 5 λ-GRPO seeds ended at GRPO's lengths (8–9 tokens)"
    assert [round(v) for v in short_lengths[3:]] == [31, 31], "2 ran to the cap (31 tokens)"
    grpo_short = sorted(_final(r, LENGTH) for r in runs[("lengths-short", "grpo")])
    assert round(grpo_short[-1]) == 22 and grpo_short[-2] < 11, "1 of 5 GRPO seeds drifted long (22 tokens)"
    claims.append(
        f"The mean ({statistics.fmean(short_lengths):.1f} against {statistics.fmean(grpo_short):.1f}) is driven"
    )
    last = {m: sorted(r[-1][REWARD] for r in runs[("lengths-long", m)]) for m in ("grpo", "grpo_lambda")}
    claims.append(
        f"at step 30 all 5 GRPO-λ seeds scored between {last['grpo_lambda'][0]:.2f} and "
        f"{last['grpo_lambda'][-1]:.2f}, GRPO's between {last['grpo'][0]:.2f} and {last['grpo'][-1]:.2f}"
    )
    val_mean = statistics.fmean(finals["lambda_grpo_val"])
    claims.append(f"(mean {_signed(val_mean)} against {_signed(statistics.fmean(finals['lambda_grpo']))})")
    clip = [final_mean("lengths-long", m, "response_length/clip_ratio") for m in long]
    claims.append(f"In steps 26–30, {min(clip) * 100:.0f}–{max(clip) * 100:.0f}% of responses hit it")
    grpo_short_runs = runs[("lengths-short", "grpo")]
    first = statistics.fmean(statistics.fmean(x[REWARD] for x in r[:5]) for r in grpo_short_runs)
    claims.append(
        f"GRPO went from {first:.3f} (steps 1–5) to {final_mean('lengths-short', 'grpo', REWARD):.3f} (steps 26–30)"
    )
    grpo_finals = sorted(_final(r, REWARD) for r in runs[("lengths-long", "grpo")])
    claims.append(f"the spread of the final reward is large (GRPO: {grpo_finals[0]:.2f} to {grpo_finals[-1]:.2f})")
    walls = [json.loads(p.read_text())["wall_s"] for p in STUDY.glob("runs/lengths-*/*/seed*/summary.json")]
    claims.append(f"min for {len(walls)} runs ({min(walls):.0f}–{max(walls):.0f} s each)")
    total = float(re.search(r"([\d.]+) min for \d+ runs", (STUDY / "README.md").read_text()).group(1))
    assert sum(walls) / 60 <= total < sum(walls) / 60 + 1, "the study's wall time: the runs' own, plus little"
    return claims


def test_the_study_page_quotes_its_committed_data():
    page = " ".join((STUDY / "README.md").read_text().split())
    missing = [claim for claim in study_claims() if claim not in page]
    assert not missing, "docs/study/README.md disagrees with results.json / runs/:\n" + "\n".join(missing)


def test_the_study_check_catches_a_changed_number():
    page = " ".join((STUDY / "README.md").read_text().split()).replace(
        "+0.147 [+0.064, +0.230]", "+0.150 [+0.064, +0.230]"
    )
    assert any(claim not in page for claim in study_claims())


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
