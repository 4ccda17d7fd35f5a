r"""The reproduction's data: training sets and evaluation benchmarks in one registry, converted to verl's schema.

Each :class:`DatasetSpec` records where the rows live on the Hugging Face Hub (id, config or data file, and split as
publicly documented), which fields hold the question and the answer, how the ground truth is read off the answer
field, and the ``data_source`` the rows carry in verl. ``data_source`` selects the answer checker
(:mod:`verl_lambda.reproduce.reward`) and names the validation metrics, ``val-core/<data_source>/acc/mean@N``.

Every prompt asks for the final answer in ``\boxed{}``, in one of three templates (:data:`PROMPTS`), so one extraction
rule (:func:`last_boxed`) reads every benchmark:

- ``qwen_boxed`` (default): Qwen2.5-Math's ``qwen-boxed`` evaluation template, the prompt SimpleRL-Zoo trains and
  evaluates Qwen2.5 base models with: system "You are a helpful assistant.", user ``<question>\nPlease reason step by
  step, and put your final answer within \boxed{}.``. Qwen2.5's chat template writes each message as
  ``<|im_start|>role\ncontent<|im_end|>\n``, so these two messages render to that template's text and step-0
  accuracies can be set against SimpleRL-Zoo's published base-model rows (not checked against the real tokenizer
  here: it needs the Hub).
- ``r1_boxed``: the same user message without a system message, as DeepSeek recommends for its R1-distilled models
  (its README's usage recommendations); the GRPO-λ regime trains DeepSeek-R1-Distill-Qwen-7B with it.
- ``verl``: verl's own MATH preprocessing example (``examples/data_preprocess/math_dataset.py``), the user message
  ``<question> Let's think step by step and output the final answer within \boxed{}.`` and no system message.

Neither λ-GRPO's nor GRPO-λ's prompt is stated in the text we could read.

verl's parquet schema, one row per problem::

    data_source   str                      selects the reward checker
    prompt        [{"role": "system", ...}, {"role": "user", "content": ...}]   (chat messages of the template)
    ability       "math"
    reward_model  {"style": "rule", "ground_truth": str}
    extra_info    {"split": str, "index": int (row in the source split), "dataset": registry name, "question": str}

:func:`to_verl_rows` is pure (records in, rows out) so it is tested on fixture records; :func:`load_records` reads a
Hugging Face dataset with ``datasets`` (on the cluster) or a JSONL file of source-format records (tests, offline).
:func:`build` writes ``DIR/<prompt>/{train,eval}/<name>.parquet``; ``python -m verl_lambda.reproduce.datasets
DATA_DIR TRAIN EVAL [PROMPT]`` prints the launchers' ``data.*_files`` overrides for those files.

Layer 7 (applications).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptTemplate:
    """Chat messages around a question; ``{question}`` in ``user`` is replaced (not ``str.format``: LaTeX braces)."""

    name: str
    user: str
    system: str | None
    source: str

    def messages(self, question: str) -> list[dict[str, str]]:
        user = {"role": "user", "content": self.user.replace("{question}", question)}
        return [{"role": "system", "content": self.system}, user] if self.system is not None else [user]


PROMPTS: dict[str, PromptTemplate] = {
    prompt.name: prompt
    for prompt in (
        PromptTemplate(
            name="qwen_boxed",
            system="You are a helpful assistant.",
            user="{question}\nPlease reason step by step, and put your final answer within \\boxed{}.",
            source="Qwen2.5-Math evaluation's qwen-boxed template; SimpleRL-Zoo's prompt for Qwen2.5 base models",
        ),
        PromptTemplate(
            name="r1_boxed",
            system=None,
            user="{question}\nPlease reason step by step, and put your final answer within \\boxed{}.",
            source=(
                "DeepSeek-R1's usage recommendations for its (distilled) models: no system prompt, the \\boxed{}"
                " directive in the user message; the GRPO-λ regime's 7B (DeepSeek-R1-Distill-Qwen-7B)"
            ),
        ),
        PromptTemplate(
            name="verl",
            system=None,
            user="{question} Let's think step by step and output the final answer within \\boxed{}.",
            source="verl's examples/data_preprocess/math_dataset.py",
        ),
    )
}
DEFAULT_PROMPT = "qwen_boxed"

LAMBDA_GRPO = "λ-GRPO (arXiv 2510.06870)"
GRPO_LAMBDA = "GRPO-λ (arXiv 2510.00194)"
# The λ-GRPO paper averages 8 benchmarks; GSM8K, MATH500, AIME24 and Minerva are named in its reviews and third-party
# listings, OlympiadBench and AMC23 are inferred (SimpleRL-Zoo's six), the other two are unknown.
LAMBDA_GRPO_INFERRED = "λ-GRPO (inferred, not confirmed)"

# How the ground truth is stored in the answer field.
PLAIN = "plain"  # the answer itself (a string or a number)
GSM8K_HASH = "gsm8k"  # a worked solution ending in "#### <number>"
BOXED = "boxed"  # a worked solution whose last \boxed{} holds the answer (MATH)
LIST = "list"  # a list of answer strings in LaTeX math mode (OlympiadBench's final_answer)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the reproduction and how its source records become verl rows."""

    name: str  # registry key; also the output file name
    title: str  # column title in the results table
    data_source: str  # verl's data_source: selects the checker, names the validation metrics
    checker: str  # key of verl_lambda.reproduce.reward.CHECKERS
    hf_id: str
    hf_config: str | None
    hf_split: str
    question_fields: tuple[str, ...]  # the first present, non-empty field is the question ("a.b": field b of a)
    answer_field: str
    answer_format: str  # PLAIN, GSM8K_HASH, BOXED or LIST
    size: int | None  # rows in the source split (after `keep`), as publicly documented; None if not known
    reported_by: tuple[str, ...] = ()  # papers that report the benchmark (empty for training sets)
    context_field: str | None = None  # prepended to the question when present (OlympiadBench)
    keep: Callable[[Mapping[str, Any]], bool] | None = None  # row filter (e.g. MATH levels)
    note: str = ""
    hf_data_files: str | None = None  # a file of the Hub repository, for datasets published as files, not configs

    @property
    def source_file(self) -> str:
        """This source split's JSONL file name for ``load_records(from_dir=...)``: ``<id>[__<config>]__<split>``."""
        parts = [self.hf_id.replace("/", "__")]
        if self.hf_config:
            parts.append(self.hf_config)
        if self.hf_data_files:
            parts.append(self.hf_data_files.split("/")[0])
        parts.append(self.hf_split)
        return "__".join(parts) + ".jsonl"


def _math_level_at_least(level: int) -> Callable[[Mapping[str, Any]], bool]:
    def keep(record: Mapping[str, Any]) -> bool:
        match = re.search(r"\d+", str(record.get("level", "")))
        return match is not None and int(match.group()) >= level

    return keep


_MATH_TRAIN: dict[str, Any] = dict(
    title="MATH (train)",
    data_source="math",
    checker="math",
    hf_id="DigitalLearningGmbH/MATH-lighteval",  # verl's MATH source since lighteval/MATH left the Hub
    hf_config=None,  # its default config, loaded as verl's examples/data_preprocess/math_dataset.py does
    hf_split="train",
    question_fields=("problem",),
    answer_field="solution",
    answer_format=BOXED,
)

TRAIN_SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="math",
            size=7500,
            note="Hendrycks et al. MATH training split, all levels; disjoint from MATH500 (drawn from the test split)",
            **_MATH_TRAIN,
        ),
        DatasetSpec(
            name="math_lvl3to5",
            size=None,
            keep=_math_level_at_least(3),
            note=(
                "MATH training split (7,500 problems), levels 3-5 only; not SimpleRL-Zoo's level 3-5 set, which has"
                " more problems than this split has in all (see simplerl_zoo_hard)"
            ),
            **_MATH_TRAIN,
        ),
        DatasetSpec(
            name="simplerl_zoo_hard",
            title="SimpleRL-Zoo hard (MATH lv.3-5)",
            data_source="math",
            checker="math",
            hf_id="hkust-nlp/SimpleRL-Zoo-Data",
            hf_config=None,
            hf_data_files="simplelr_qwen_level3to5/train.parquet",
            hf_split="train",
            question_fields=("extra_info.question",),
            answer_field="extra_info.answer",
            answer_format=PLAIN,
            size=None,
            note=(
                "SimpleRL-Zoo's own 'Hard' training set (MATH levels 3-5, about 8K problems per its README), as the"
                " authors publish it; its record fields are taken from third-party code, not verified here"
            ),
        ),
        DatasetSpec(
            name="gsm8k_train",
            title="GSM8K (train)",
            data_source="gsm8k",
            checker="gsm8k",
            hf_id="openai/gsm8k",
            hf_config="main",
            hf_split="train",
            question_fields=("question",),
            answer_field="answer",
            answer_format=GSM8K_HASH,
            size=7473,
        ),
        DatasetSpec(
            name="deepscaler",
            title="DeepScaleR",
            data_source="deepscaler",
            checker="math",
            hf_id="agentica-org/DeepScaleR-Preview-Dataset",
            hf_config=None,
            hf_split="train",
            question_fields=("problem",),
            answer_field="answer",
            answer_format=PLAIN,
            size=40315,
            note="AIME (1984-2023), AMC (before 2023), Omni-MATH and STILL problems; harder, for longer runs",
        ),
    )
}

# Training sets selectable by name (TRAIN=... in the launchers), each a list of TRAIN_SPECS combined in one file.
TRAIN_SETS: dict[str, tuple[str, ...]] = {
    "math": ("math",),  # default: docs/reproduce.md, "Data"
    "math_lvl3to5": ("math_lvl3to5",),
    "simplerl_zoo_hard": ("simplerl_zoo_hard",),  # SimpleRL-Zoo's data, for comparisons with its published rows
    "gsm8k_math": ("gsm8k_train", "math"),  # exactly the data of verl's GRPO math example scripts
    "deepscaler": ("deepscaler",),
}
DEFAULT_TRAIN_SET = "math"

EVAL_SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="gsm8k",
            title="GSM8K",
            data_source="gsm8k",
            checker="gsm8k",
            hf_id="openai/gsm8k",
            hf_config="main",
            hf_split="test",
            question_fields=("question",),
            answer_field="answer",
            answer_format=GSM8K_HASH,
            size=1319,
            reported_by=(LAMBDA_GRPO,),
        ),
        DatasetSpec(
            name="math500",
            title="MATH500",
            data_source="math500",
            checker="math",
            hf_id="HuggingFaceH4/MATH-500",
            hf_config=None,
            hf_split="test",
            question_fields=("problem",),
            answer_field="answer",
            answer_format=PLAIN,
            size=500,
            reported_by=(LAMBDA_GRPO, GRPO_LAMBDA),
        ),
        DatasetSpec(
            name="minerva",
            title="Minerva",
            data_source="minerva",
            checker="math",
            hf_id="math-ai/minervamath",
            hf_config=None,
            hf_split="test",
            question_fields=("question", "problem"),
            answer_field="answer",
            answer_format=PLAIN,
            size=272,
            reported_by=(LAMBDA_GRPO, GRPO_LAMBDA),
            note="Minerva's OCWCourses problems (Lewkowycz et al. 2022), as used in Qwen2.5-Math's evaluation",
        ),
        DatasetSpec(
            name="olympiadbench",
            title="OlympiadBench",
            data_source="olympiadbench",
            checker="math",
            hf_id="Hothan/OlympiadBench",
            hf_config="OE_TO_maths_en_COMP",
            hf_split="train",  # the mirror publishes the benchmark as its only split
            question_fields=("question",),
            answer_field="final_answer",
            answer_format=LIST,
            size=674,
            reported_by=(GRPO_LAMBDA, LAMBDA_GRPO_INFERRED),
            context_field="context",
            note="open-ended, text-only, English competition maths subset; GRPO-λ calls it OlympiadMath",
        ),
        DatasetSpec(
            name="aime24",
            title="AIME24",
            data_source="aime24",
            checker="math",
            hf_id="HuggingFaceH4/aime_2024",
            hf_config=None,
            hf_split="train",  # the benchmark is published as the only split
            question_fields=("problem",),
            answer_field="answer",
            answer_format=PLAIN,
            size=30,
            reported_by=(LAMBDA_GRPO, GRPO_LAMBDA),
        ),
        DatasetSpec(
            name="amc23",
            title="AMC23",
            data_source="amc23",
            checker="math",
            hf_id="math-ai/amc23",
            hf_config=None,
            hf_split="test",
            question_fields=("question", "problem"),
            answer_field="answer",
            answer_format=PLAIN,
            size=40,
            reported_by=(GRPO_LAMBDA, LAMBDA_GRPO_INFERRED),
            note="AMC 12 2023 problems with numeric answers; GRPO-λ says 'AMC' without a year: AMC23 is assumed",
        ),
    )
}

ALL_SPECS: dict[str, DatasetSpec] = {**TRAIN_SPECS, **EVAL_SPECS}


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``, or ``\boxed x``) in ``text``; None if there is none.

    Braces are matched, so ``\boxed{\frac{1}{2}}`` gives ``\frac{1}{2}``; an unclosed box gives None.
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    command = "\\boxed" if text.startswith("\\boxed", start) else "\\fbox"
    rest = text[start + len(command) :]
    if rest.startswith(" "):  # "\boxed 5": up to the end of the math or the line
        return re.split(r"[$\n]", rest.strip(), maxsplit=1)[0].strip() or None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i].strip()
    return None


_GSM8K_FINAL = re.compile(r"####\s*(-?[0-9][0-9.,]*)")


def gsm8k_final_answer(text: str) -> str | None:
    """The number after GSM8K's ``####`` marker (last one), commas removed; None if there is none."""
    matches = _GSM8K_FINAL.findall(text)
    return matches[-1].replace(",", "").rstrip(".") if matches else None


def _plain(value: Any) -> str | None:
    """A ground truth as a string: integral numbers without ``.0``, math-mode ``$`` removed, whitespace stripped."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    text = re.sub(r"(?<!\\)\$", "", str(value)).strip()
    return text or None


def field_value(record: Mapping[str, Any], name: str) -> Any:
    """``record[name]``; ``"a.b"`` is field ``b`` of the mapping in field ``a``. None when absent."""
    value: Any = record
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def ground_truth(record: Mapping[str, Any], spec: DatasetSpec) -> str | None:
    """The answer of ``record`` as the checker compares it, or None when it cannot be read."""
    value = field_value(record, spec.answer_field)
    if spec.answer_format == PLAIN:
        return _plain(value)
    if spec.answer_format == GSM8K_HASH:
        return gsm8k_final_answer(str(value or ""))
    if spec.answer_format == BOXED:
        return _plain(last_boxed(str(value or "")))
    if spec.answer_format == LIST:
        items = list(value) if isinstance(value, list | tuple) else [value]
        answers = [a for a in (_plain(item) for item in items) if a]
        return ", ".join(answers) or None
    raise ValueError(f"unknown answer format {spec.answer_format!r} of dataset {spec.name!r}")


def question_text(record: Mapping[str, Any], spec: DatasetSpec) -> str | None:
    """The question of ``record``, after the spec's context field when that is present."""
    question = next((str(field_value(record, f)).strip() for f in spec.question_fields if field_value(record, f)), None)
    if question and spec.context_field and record.get(spec.context_field):
        question = f"{str(record[spec.context_field]).strip()}\n{question}"
    return question


def to_verl_rows(
    records: Iterable[Mapping[str, Any]], spec: DatasetSpec, split: str, prompt: str = DEFAULT_PROMPT
) -> list[dict[str, Any]]:
    """Convert source-format records of ``spec`` into verl's RL parquet rows, asking with template ``prompt``.

    Records the spec's filter rejects are left out. A record whose question or answer cannot be read is skipped
    (with a warning) in a training set and is an error in a benchmark, whose size must not change silently.
    """
    template = PROMPTS[resolve_names(prompt, list(PROMPTS), "prompt")[0]]
    rows, skipped = [], []
    for index, record in enumerate(records):
        if spec.keep is not None and not spec.keep(record):
            continue
        question, answer = question_text(record, spec), ground_truth(record, spec)
        if not question or not answer:
            if EVAL_SPECS.get(spec.name) is spec:
                raise ValueError(f"{spec.name}: record {index} has no readable question or answer: {dict(record)!r}")
            skipped.append(index)
            continue
        rows.append(
            {
                "data_source": spec.data_source,
                "prompt": template.messages(question),
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": answer},
                "extra_info": {"split": split, "index": index, "dataset": spec.name, "question": question},
            }
        )
    if skipped:
        logger.warning(
            "%s: skipped %d records without a readable answer (first: %s)", spec.name, len(skipped), skipped[0]
        )
    return rows


def load_records(spec: DatasetSpec, from_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The source split of ``spec``: from ``from_dir/<spec.source_file>`` (JSONL) if given, else from the Hub."""
    if from_dir is not None:
        path = Path(from_dir).expanduser() / spec.source_file
        if not path.exists():
            raise FileNotFoundError(
                f"{spec.name}: no {path} (expected the {spec.hf_id} {spec.hf_split} split as JSONL)"
            )
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    import datasets  # the Hugging Face library; only needed when downloading

    if spec.hf_data_files:
        return datasets.load_dataset(spec.hf_id, data_files=spec.hf_data_files, split=spec.hf_split).to_list()
    return datasets.load_dataset(spec.hf_id, spec.hf_config, split=spec.hf_split).to_list()


def write_parquet(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not rows:
        raise ValueError(f"no rows to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows)), path)


def resolve_names(value: str | Sequence[str], known: Sequence[str], what: str) -> list[str]:
    """``"all"``, ``"none"``, a comma-separated string or a list of names, checked against ``known``."""
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return list(known)
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(known)}, 'all' or 'none'")
    return names


def build(
    out_dir: str | Path,
    train: str | Sequence[str] = DEFAULT_TRAIN_SET,
    evals: str | Sequence[str] = "all",
    from_dir: str | Path | None = None,
    limit: int | None = None,
    prompts: str | Sequence[str] = "all",
) -> dict[str, Any]:
    """Write ``out_dir/<prompt>/train/<set>.parquet`` and ``out_dir/<prompt>/eval/<benchmark>.parquet`` for every
    prompt template of ``prompts``; return (and write to ``out_dir/manifest.json``) what was written.

    ``limit`` keeps the first rows of each dataset (smoke runs); a benchmark is otherwise written whole.
    """
    out_dir = Path(out_dir).expanduser()
    cache: dict[str, list[dict[str, Any]]] = {}

    def records(spec: DatasetSpec) -> list[dict[str, Any]]:
        if spec.source_file not in cache:  # MATH and its level subset share one download
            cache[spec.source_file] = load_records(spec, from_dir)
        return cache[spec.source_file]

    train_names = resolve_names(train, list(TRAIN_SETS), "training set")
    eval_names = resolve_names(evals, list(EVAL_SPECS), "benchmark")
    manifest: dict[str, Any] = {"prompts": {}}
    for prompt in resolve_names(prompts, list(PROMPTS), "prompt"):
        written: dict[str, Any] = {"template": asdict(PROMPTS[prompt]), "train": {}, "eval": {}}
        for name in train_names:
            rows = []
            for spec_name in TRAIN_SETS[name]:
                spec = TRAIN_SPECS[spec_name]
                rows += to_verl_rows(records(spec), spec, "train", prompt)[:limit]
            path = out_dir / prompt / "train" / f"{name}.parquet"
            write_parquet(rows, path)
            written["train"][name] = {"path": str(path), "rows": len(rows), "sources": list(TRAIN_SETS[name])}
        for name in eval_names:
            spec = EVAL_SPECS[name]
            rows = to_verl_rows(records(spec), spec, "test", prompt)[:limit]
            if limit is None and spec.size is not None and len(rows) != spec.size:
                logger.warning("%s: %d rows, the published benchmark has %d", name, len(rows), spec.size)
            path = out_dir / prompt / "eval" / f"{name}.parquet"
            write_parquet(rows, path)
            written["eval"][name] = {"path": str(path), "rows": len(rows), "data_source": spec.data_source}
        manifest["prompts"][prompt] = written
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def eval_files(data_dir: str | Path, evals: str | Sequence[str] = "all", prompt: str = DEFAULT_PROMPT) -> list[Path]:
    """The benchmark files :func:`build` writes for ``evals`` and ``prompt`` (absolute paths, registry order)."""
    data_dir = Path(data_dir).expanduser().absolute()
    [prompt] = resolve_names(prompt, list(PROMPTS), "prompt")
    benchmarks = resolve_names(evals, list(EVAL_SPECS), "benchmark")
    if not benchmarks:
        raise ValueError("at least one benchmark is needed for validation")
    return [data_dir / prompt / "eval" / f"{name}.parquet" for name in benchmarks]


def data_overrides(
    data_dir: str | Path,
    train: str = DEFAULT_TRAIN_SET,
    evals: str | Sequence[str] = "all",
    prompt: str = DEFAULT_PROMPT,
) -> list[str]:
    """verl's ``data.train_files`` / ``data.val_files`` overrides for the files :func:`build` writes."""
    if train not in TRAIN_SETS:
        raise ValueError(f"unknown training set {train!r}; choose from {list(TRAIN_SETS)}")
    val_files = eval_files(data_dir, evals, prompt)
    train_file = val_files[0].parents[1] / "train" / f"{train}.parquet"
    return [f"data.train_files='{train_file}'", "data.val_files=[" + ",".join(f"'{f}'" for f in val_files) + "]"]


if __name__ == "__main__":
    # python -m verl_lambda.reproduce.datasets DATA_DIR TRAIN EVAL [PROMPT]: the data overrides, one per line.
    import sys

    try:
        print("\n".join(data_overrides(*sys.argv[1:5])))
    except (TypeError, ValueError) as exc:
        sys.exit(f"verl_lambda.reproduce.datasets: {exc}")
