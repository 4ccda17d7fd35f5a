r"""``compute_score`` for verl's custom reward function: every ``data_source`` of the registry, one answer checker.

    reward.custom_reward_function.path=pkg://verl_lambda.reproduce.reward
    reward.custom_reward_function.name=compute_score
    reward.custom_reward_function.reward_kwargs.checker=math_verify   # the default; or strict

Our code only extracts the answer and routes it; a maintained library decides whether it is right:

1. **Extraction.** Every prompt asks for the final answer in ``\boxed{}``, so the answer is the content of the last
   ``\boxed{}`` (:func:`verl_lambda.reproduce.datasets.last_boxed`); a response without one gets no credit. GSM8K
   rows (registry checker ``gsm8k``) also accept GSM8K's own ending ``#### <number>`` when there is no box, read
   by verl's strict GSM8K extraction.
2. **Numbers compare as numbers**, exactly, before any library: decimals (``18.00`` = ``18``), thousands
   separators (``1,000``, ``10\,000``), scientific notation (``7.5e-13``), ``a \times 10^{b}`` / ``a \cdot 10^{b}``
   and ``10^{b}``, with ``\$`` and a trailing percent sign dropped. This decides whenever both sides are numbers,
   because neither library does it right: Math-Verify reads ``7.5e-13`` as 7.5·e − 13 (Euler's e), and verl's
   PRM800K grader rounds near-integer floats, so it accepted ``\boxed{0}`` for ``7.5e-13`` and ``1e-10``.
3. **The checker** (``reward_kwargs.checker``):

   - ``math_verify`` (default): Hugging Face's Math-Verify (``math_verify.parse`` / ``verify``) on the boxed ground
     truth and the boxed answer: LaTeX and plain expressions, sets and ``\pm``, intervals and ``x \in [1,2]``,
     equations (``x = 3``), units and ``^\circ``, symbolic equality. It runs in child processes with hard timeouts
     (:mod:`verl_lambda.reproduce.verify`) because verl calls reward functions from threads.
   - ``strict``: this project's earlier checker, kept so that results stay comparable with it: verl's MATH checker
     (``math_reward.is_equiv``, Hendrycks et al.'s normalisation), then verl's PRM800K grader
     (``prime_math.grade_answer``: sympy, ``0.5 = \frac12``, units; unreduced fractions and integer-vs-expression
     refused), then a list of answers (``-2, 2``) matched in any order.

Both verdicts are computed for every response and returned, whichever one is the score, so a run logs both (it
costs a second check per response, which verl's reward workers run while vLLM is still generating):

- ``score``, ``acc``: 1.0 or 0.0 from the chosen checker (verl logs ``acc`` as ``val-core/<data_source>/acc/mean@N``);
- ``acc_math_verify``, ``acc_strict``: each checker's verdict (``val-aux/<data_source>/acc_strict/mean@N``, ...);
- ``pred``: the extracted answer (verl's majority vote, ``maj@N``, groups by it);
- ``problem``: ``<data_source>/<row index in the source split>``, which pairs the same problem across runs and seeds
  in the per-problem dumps (``trainer.validation_data_dir``; verl does not dump the data_source itself).

An unknown ``data_source`` is an error: scoring it with some default checker would put a wrong number in the table
without a trace. Scores are 1.0 / 0.0, the scale of verl's own maths checkers (GRPO's group normalisation makes the
scale irrelevant to training; it keeps ``acc`` an accuracy).

Layer 7 (applications).
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from typing import Any

from verl_lambda.reproduce.datasets import ALL_SPECS, last_boxed

logger = logging.getLogger(__name__)

CHECKERS = ("math_verify", "strict")
DEFAULT_CHECKER = "math_verify"

_DECIMAL = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_INT = r"[-+]?\d+"
_PLAIN = re.compile(rf"(?P<mantissa>{_DECIMAL})(?:[eE](?P<exp>{_INT}))?")
_TIMES_TEN = re.compile(
    rf"(?:(?P<mantissa>{_DECIMAL})(?:\\times|\\cdot|\*|×|·))?10\^(?:\{{(?P<exp>{_INT})\}}|(?P<exp1>{_INT}))"
)
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?")
_MAX_EXPONENT = 400  # beyond this a "number" is a symbolic expression for the checkers, not a Fraction to build


def _strip_percent(text: str) -> str:
    text = text.strip()
    for suffix in ("\\%", "%"):
        if text.endswith(suffix):
            return text[: -len(suffix)].strip()
    return text


def parse_number(text: str) -> Fraction | None:
    r"""``text`` as an exact number when it is one (rule 2 of the module docstring), else None.

    ``-12``, ``3.50``, ``1,000``, ``10\,000``, ``\$18``, ``25\%``, ``7.5e-13``, ``7.5 \times 10^{-13}``,
    ``3\cdot 10^8`` and ``10^{3}`` are numbers; ``\frac{1}{2}``, ``2^{10}`` and ``x = 3`` are left to the checkers.
    """
    text = _strip_percent(text)
    for token in ("\\$", "$", "\\!", "\\,", "\\ ", "~", " "):
        text = text.replace(token, "")
    text = text.replace("{,}", ",")
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    match = _PLAIN.fullmatch(text) or _TIMES_TEN.fullmatch(text)
    if match is None:
        return None
    exponent = int(match["exp"] or match.groupdict().get("exp1") or 0)
    if abs(exponent) > _MAX_EXPONENT:
        return None
    mantissa = Fraction(match["mantissa"].rstrip(".") or "1") if match["mantissa"] else Fraction(1)
    return mantissa * Fraction(10) ** exponent


def _top_level_items(text: str) -> list[str]:
    """``text`` split at commas outside brackets and braces."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    return [*items, text[start:].strip()]


def strict_equal(pred: str, truth: str) -> bool:
    """The ``strict`` checker: numbers (rule 2), verl's MATH checker, verl's PRM800K grader, lists in any order."""
    pred_number, truth_number = parse_number(pred), parse_number(truth)
    if pred_number is not None and truth_number is not None:
        return pred_number == truth_number
    from verl.utils.reward_score import math_reward, prime_math

    try:
        if math_reward.is_equiv(pred, truth):
            return True
    except Exception:  # verl's normaliser asserts on some malformed LaTeX; that is a miss, not a crash
        pass
    try:
        if prime_math.grade_answer(pred, truth):
            return True
    except Exception:
        pass
    return _same_answer_set(pred, truth)


def _same_answer_set(pred: str, truth: str) -> bool:
    """A list of answers (``-2, 2``: OlympiadBench's multiple-answer problems) matches in any order.

    Tuples and intervals keep their order: they are bracketed, so they are one item here and the graders above
    compare them element-wise.
    """
    if parse_number(truth) is not None:  # one number, maybe with thousands commas (10,080): not a list
        return False
    truths, preds = _top_level_items(truth), _top_level_items(pred)
    if len(truths) < 2 or len(truths) != len(preds) or not all(truths) or not all(preds):
        return False
    unmatched = list(preds)
    for item in truths:
        match = next((p for p in unmatched if strict_equal(p, item)), None)
        if match is None:
            return False
        unmatched.remove(match)
    return True


def math_verify_equal(pred: str, truth: str) -> bool:
    """The ``math_verify`` checker: numbers (rule 2), then Math-Verify in a child process."""
    pred_number, truth_number = parse_number(pred), parse_number(truth)
    if pred_number is not None and truth_number is not None:
        return pred_number == truth_number
    from verl_lambda.reproduce.verify import require_math_verify, shared_pool

    require_math_verify()
    # Math-Verify leaves "12\%" unparsed (a string that equals nothing numeric); MATH's own normaliser drops it too.
    return shared_pool().equal(_strip_percent(truth), _strip_percent(pred))


def extract_answer(solution_str: str, extraction: str) -> str | None:
    r"""The answer of a response: its last ``\boxed{}``; for ``gsm8k`` rows also a final ``#### N`` (no box)."""
    pred = last_boxed(solution_str)
    if pred is None and extraction == "gsm8k":
        from verl.utils.reward_score import gsm8k

        pred = gsm8k.extract_solution(solution_str)  # verl's strict "#### N"
    return pred


# One source of truth: the registry says how each data_source's answers are extracted.
CHECKER_OF: dict[str, str] = {spec.data_source: spec.checker for spec in ALL_SPECS.values()}
_MISSING_MATH_VERIFY_WARNED = False


def _verdicts(pred: str, truth: str, checker: str) -> tuple[float, float | None]:
    """``(strict, math_verify)``; Math-Verify's is None only for ``checker=strict`` without Math-Verify installed."""
    global _MISSING_MATH_VERIFY_WARNED
    strict = float(strict_equal(pred, truth))
    try:
        return strict, float(math_verify_equal(pred, truth))
    except ImportError:
        if checker == "math_verify":
            raise
        if not _MISSING_MATH_VERIFY_WARNED:
            logger.warning("Math-Verify is not installed: acc_math_verify is not logged (checker=strict)")
            _MISSING_MATH_VERIFY_WARNED = True
        return strict, None


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    checker: str = DEFAULT_CHECKER,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score one response (see the module docstring). ``kwargs`` are verl's other arguments, not used."""
    if data_source not in CHECKER_OF:
        raise ValueError(
            f"verl_lambda.reproduce.reward has no checker for data_source={data_source!r}; "
            f"known: {sorted(CHECKER_OF)} (add the dataset to verl_lambda/reproduce/datasets.py)"
        )
    if "math_verify" in kwargs:
        raise ValueError("reward_kwargs.math_verify is gone: Math-Verify is the default (reward_kwargs.checker)")
    if checker not in CHECKERS:
        raise ValueError(f"reward_kwargs.checker must be one of {CHECKERS}, got {checker!r}")
    if checker == "math_verify":
        from verl_lambda.reproduce.verify import require_math_verify

        require_math_verify()  # on every call, so that no score is computed before a missing install is reported
    truth = str(ground_truth)
    pred = extract_answer(solution_str, CHECKER_OF[data_source])
    strict, by_math_verify = (0.0, 0.0) if pred is None else _verdicts(pred, truth, checker)
    score = strict if checker == "strict" else by_math_verify
    index = (extra_info or {}).get("index")
    return {
        "score": score,
        "acc": score,
        "acc_math_verify": by_math_verify,
        "acc_strict": strict,
        "pred": pred or "",
        "problem": f"{data_source}/{index}" if index is not None else "",
    }
