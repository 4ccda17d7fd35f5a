r"""``compute_score`` for verl's custom reward function: every ``data_source`` of the registry to its answer checker.

    reward.custom_reward_function.path=pkg://verl_lambda.reproduce.reward
    reward.custom_reward_function.name=compute_score

Every prompt asks for the final answer in ``\boxed{}`` (:data:`verl_lambda.reproduce.datasets.INSTRUCTION`), so the
answer of a response is the content of its last ``\boxed{}``; a response without one gets no credit, as in verl's
MATH checker. Scores are 1.0 (correct) or 0.0, the scale of verl's MATH and GSM8K checkers (GRPO's group
normalisation makes the scale irrelevant to training; it keeps ``acc`` an accuracy).

=========================================================  =========  ==============================================
data_source (registry name)                                checker    why
=========================================================  =========  ==============================================
``math500``, ``minerva``, ``olympiadbench``, ``aime24``,   ``math``   LaTeX answers (fractions, radicals, tuples,
``amc23``; training: ``math``, ``deepscaler``                         intervals, units): string normalisation alone
                                                                      misses equal forms, sympy alone is slow;
                                                                      AIME/AMC numbers take the fast check 1
``gsm8k`` (benchmark and training rows)                    ``gsm8k``  number answers; also accepts GSM8K's own
                                                                      ``#### N`` ending when there is no box
=========================================================  =========  ==============================================

``math``: the boxed answer is correct when one of these checks accepts it, in this order (2-4 are verl's):

1. numbers compare as numbers (``18.00`` = ``18``, ``1,000`` = ``1000``): the same verdict as check 3 gives for
   two plain numbers, without its sympy subprocess;
2. ``verl.utils.reward_score.math_reward.is_equiv``: Hendrycks et al.'s MATH normalisation (``\dfrac``, ``x=3``,
   ``\$``, spaces, ``^\circ``), verl's default checker for MATH;
3. ``verl.utils.reward_score.prime_math.grade_answer``: the PRM800K grader (verl's checker for the NuminaMath
   sources): normalised strings, then sympy on the difference under a 10 s limit, element-wise for tuples and
   intervals (``0.5`` = ``\frac{1}{2}``, ``\frac{\sqrt3}{3}`` = ``\frac{1}{\sqrt3}``, ``3 cm`` = ``3``; unreduced
   fractions and integer-vs-expression are refused, as PRM800K does);
4. optional, ``reward_kwargs.math_verify=true``: Hugging Face Math-Verify through ``verl.utils.reward_score.
   math_verify`` on the boxed answer (needs ``pip install math-verify``). Off by default so that a score never
   depends on what happens to be installed;
5. a list of answers (``-2, 2``; OlympiadBench's multiple-answer problems) matches in any order, item by item.

``gsm8k``: ``math`` on the boxed answer; when the response has no box, verl's own GSM8K checker
(``verl.utils.reward_score.gsm8k``, strict ``#### <number>``), the format of GSM8K's reference solutions.

Not used: verl's ``math_dapo`` (its default for ``aime*`` and ``math``), which reads ``Answer: ...`` first, compares
boxed answers as raw strings and scores -1/1; verl's ``gsm8k`` alone, which ignores the boxed answer the prompt asks
for; ``prime_math.compute_score``, which also takes unboxed phrases such as "the answer is".

The result is ``{"score", "acc", "pred"}`` for every data_source: verl logs ``acc`` as
``val-core/<data_source>/acc/mean@N`` and uses the extracted answer ``pred`` for majority voting (``maj@N``).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable
from typing import Any

from verl_lambda.reproduce.datasets import ALL_SPECS, last_boxed

_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?")


def _as_number(text: str) -> float | None:
    """A plain decimal number (``-12``, ``3.50``, ``1,000``, ``$18``), else None. Fractions are left to the graders."""
    text = text.strip().replace("\\$", "").replace("$", "").replace("\\!", "").replace("{,}", ",").strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _math_verify(pred: str, ground_truth: str) -> bool:
    if importlib.util.find_spec("math_verify") is None:
        raise ImportError("reward_kwargs.math_verify=true needs Math-Verify: pip install math-verify")
    from verl.utils.reward_score import math_verify

    return math_verify.compute_score("\\boxed{" + pred + "}", ground_truth) >= 1.0


def is_equivalent(pred: str, ground_truth: str, use_math_verify: bool = False) -> bool:
    """Whether the answer ``pred`` equals ``ground_truth`` (checks 1-5 of the module docstring)."""
    pred_number, truth_number = _as_number(pred), _as_number(ground_truth)
    if pred_number is not None and truth_number is not None:
        return math.isclose(pred_number, truth_number, rel_tol=1e-9, abs_tol=1e-12)
    from verl.utils.reward_score import math_reward, prime_math

    try:
        if math_reward.is_equiv(pred, ground_truth):
            return True
    except Exception:  # verl's normaliser asserts on some malformed LaTeX; that is a miss, not a crash
        pass
    try:
        if prime_math.grade_answer(pred, ground_truth):
            return True
    except Exception:
        pass
    if use_math_verify and _math_verify(pred, ground_truth):
        return True
    return _same_answer_set(pred, ground_truth, use_math_verify)


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


def _same_answer_set(pred: str, ground_truth: str, use_math_verify: bool) -> bool:
    """A list of answers (``-2, 2``: OlympiadBench's multiple-answer problems) matches in any order.

    Tuples and intervals keep their order: they are bracketed, so they are one item here and the graders above
    compare them element-wise.
    """
    if _as_number(ground_truth) is not None:  # one number, maybe with thousands commas (10,080): not a list
        return False
    truths, preds = _top_level_items(ground_truth), _top_level_items(pred)
    if len(truths) < 2 or len(truths) != len(preds) or not all(truths) or not all(preds):
        return False
    unmatched = list(preds)
    for truth in truths:
        match = next((p for p in unmatched if is_equivalent(p, truth, use_math_verify)), None)
        if match is None:
            return False
        unmatched.remove(match)
    return True


def _result(correct: bool, pred: str | None) -> dict[str, Any]:
    return {"score": float(correct), "acc": float(correct), "pred": pred or ""}


def check_math(solution_str: str, ground_truth: str, use_math_verify: bool = False) -> dict[str, Any]:
    pred = last_boxed(solution_str)
    return _result(pred is not None and is_equivalent(pred, ground_truth, use_math_verify), pred)


def check_gsm8k(solution_str: str, ground_truth: str, use_math_verify: bool = False) -> dict[str, Any]:
    if last_boxed(solution_str) is not None:
        return check_math(solution_str, ground_truth, use_math_verify)
    from verl.utils.reward_score import gsm8k

    # score and pred from the same extraction (verl's strict "#### N"), so majority votes count only what was scored
    pred = gsm8k.extract_solution(solution_str)
    return _result(gsm8k.compute_score(solution_str, ground_truth) == 1.0, pred)


CHECKERS: dict[str, Callable[..., dict[str, Any]]] = {"math": check_math, "gsm8k": check_gsm8k}
# One source of truth: the registry says which checker each data_source gets.
CHECKER_OF: dict[str, str] = {spec.data_source: spec.checker for spec in ALL_SPECS.values()}


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **kwargs: Any
) -> dict[str, Any]:
    """Score one response. ``kwargs`` come from verl (e.g. ``reward_kwargs``); ``math_verify=True`` enables check 4.

    An unknown ``data_source`` is an error: scoring it with some default checker would put a wrong number in the
    table without a trace.
    """
    if data_source not in CHECKER_OF:
        raise ValueError(
            f"verl_lambda.reproduce.reward has no checker for data_source={data_source!r}; "
            f"known: {sorted(CHECKER_OF)} (add the dataset to verl_lambda/reproduce/datasets.py)"
        )
    checker = CHECKERS[CHECKER_OF[data_source]]
    return checker(solution_str, str(ground_truth), use_math_verify=bool(kwargs.get("math_verify", False)))
