"""Mutation testing of the algorithms' code with cosmic-ray (pinned in the ``test`` extra). Not part of CI.

    python scripts/mutation_test.py                          # every module, as far as --minutes allows
    python scripts/mutation_test.py verl_lambda/config.py    # one module
    python scripts/mutation_test.py --minutes 60              # stop after an hour; the next run resumes
    python scripts/mutation_test.py --recheck-survivors       # after adding tests: survivors run again
    python scripts/mutation_test.py --workers 2               # two mutants at once, each in its own scratch tree
    python scripts/mutation_test.py --report-only             # rewrite docs/mutation from the sessions

Each module is mutated against the fast tests that exercise it (``MODULES`` below: a mapping module -> test files,
not the whole suite), one cosmic-ray session per module in ``.mutation/`` (git-ignored). Runs are resumable: a
session keeps every finished mutant's outcome, ``cosmic-ray exec`` only runs the pending ones, and a run cut short
(``--minutes``, Ctrl-C) loses at most the mutant in flight. A session is rebuilt from scratch only when its module's
source changed (its hash is kept next to the session), since the mutants' positions would no longer match; a new
session starts with a baseline run of the module's tests on the unmutated copy, which must pass. The triage notes
of a rebuilt module's survivors carry over where the mutation is the same (operator and diff text, whatever its new
line), if the note says it is equivalent or harmless (``earlier_notes``).

cosmic-ray mutates files in place, so everything runs in a scratch copy of the checkout (``.mutation/tree-<module>``,
laid anew from the tracked and untracked-not-ignored files at every run, which also undoes a mutant left behind by a
killed run). Each mutant's tests run as ``python -m pytest -x`` in that copy, started by a process whose ``PYTHONPATH``
is the copy (``tree_env``), with ``PYTHONSAFEPATH=1``: the test process imports the mutated package, and so does every
subprocess the tests start. With ``--workers N`` cosmic-ray's http distributor hands the mutants to N
``cosmic-ray http-worker`` processes, each in its own copy with that environment and one thread per test process.
In particular the gloo ranks of ``tests/support/lambda_runs.py`` (``launch_ranks``) are started as
``python lambda_runs.py`` with ``os.environ`` passed on: they inherit ``PYTHONPATH``, so they see the mutant too. (A
rank's ``sys.path[0]`` is the script's folder, not the copy's root: without the inherited ``PYTHONPATH`` it would
import the editable install's unmutated package.)

Outcomes are cosmic-ray's: *killed* (a test failed, or the run timed out), *survived*, *incompetent* (the mutant
could not run, e.g. it broke the import). The report, ``docs/mutation/report.md`` and ``docs/mutation/report.json``,
gives the kill rate per module, what is still pending, and every survivor with its diff and its triage note from
``docs/mutation/triage.json`` (a test that now kills it, or why it is equivalent or harmless), keyed by
``module:line:operator:occurrence``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".mutation"
DOCS = ROOT / "docs" / "mutation"
TRIAGE = DOCS / "triage.json"

# module -> (test files, extra pytest arguments). Only fast tests: each runs once per mutant.
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "verl_lambda/config.py": (
        ["tests/test_config.py", "tests/test_mutants.py"],
        ["-k", "not driver_rejects and (test_config or default)"],
    ),
    "verl_lambda/ops/length_weights.py": (["tests/test_math_fixtures.py", "tests/test_length_weights.py"], []),
    "verl_lambda/ops/eligibility_trace.py": (
        ["tests/test_math_fixtures.py", "tests/test_eligibility_trace.py"],
        # the 4096- and 8192-token reference comparisons and the 65536-token memory check take minutes per mutant; the
        # fixtures' long cases (T = 2100) and the shorter comparisons cover the same code paths
        ["-k", "not 8192 and not 4096 and not memory_is_linear"],
    ),
    "verl_lambda/grpo_lambda.py": (
        ["tests/test_grpo_lambda_loss.py", "tests/test_mutants.py", "tests/test_autocast.py"],
        ["-k", "not engine and not mini_batch and not grad_norm and not scale and not trainer"],
    ),
    "verl_lambda/lambda_grpo.py": (
        [
            "tests/test_lambda_grpo_loss.py",
            "tests/test_mutants.py",
            "tests/test_lambda_grpo_validation.py",
            "tests/test_cluster_path.py",
            "tests/test_lambda_grpo_engine.py",
            "tests/test_lambda_grpo_state.py",
        ],
        # the fast tests only; of them, the two ~40 s micro-batch invariance runs in fp32 are left out: a surviving
        # mutant would cost 3 min instead of 1, and the bf16 engine run and test_mutants' two-mini-batch steps cover
        # the same code (survivors are rechecked against them by hand when triaged)
        ["-m", "not e2e", "-k", "not resumes_exactly and not (invariant_to_micro_batch_size and not bf16)"],
    ),
}

# cosmic-ray replaces every binary and comparison operator by every other (+ -> <<, < -> is not, ...): most of those
# only ever raise on floats and tensors, and each mutant costs a test run (tens of seconds: verl's import). Kept: the
# slips of the pen (+ -, * /, / //, ** *, < <=, < >, == !=, is / is not, in / not in) and every other operator.
KEPT_BINARY = "Add_Sub|Sub_Add|Mul_Div|Div_Mul|Add_Mul|Mul_Add|Pow_Mul|FloorDiv_Div|Div_FloorDiv"
KEPT_COMPARISON = (
    "Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Lt_Gt|Gt_Lt|LtE_GtE|GtE_LtE|Eq_NotEq|NotEq_Eq|Is_IsNot|IsNot_Is|In_NotIn|NotIn_In"
)
EXCLUDED_OPERATORS = [
    rf"core/ReplaceBinaryOperator_(?!({KEPT_BINARY})$)",
    rf"core/ReplaceComparisonOperator_(?!({KEPT_COMPARISON})$)",
]
# per mutant: a few times the module's test run on the loaded 2-core machine (a mutant that loops is killed by it)
TIMEOUT_S = {"verl_lambda/lambda_grpo.py": 900.0}
DEFAULT_TIMEOUT_S = 400.0


def slug(module: str) -> str:
    return module.removeprefix("verl_lambda/").removesuffix(".py").replace("/", ".")


def python() -> str:
    return sys.executable


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def tree(module: str, worker: int = 0) -> Path:
    """The module's scratch copy of the checkout: one per module (and per worker of ``--workers``), so that two runs
    on different modules can go on at once (``python scripts/mutation_test.py A & python scripts/mutation_test.py
    B``; not the same module twice)."""
    return STATE / (f"tree-{slug(module)}" + (f"-w{worker}" if worker else ""))


def lay_tree(module: str, worker: int = 0) -> None:
    """A fresh scratch copy of the checkout's files (tracked, and untracked but not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    root = tree(module, worker)
    if root.exists():
        shutil.rmtree(root)
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if source.is_file():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def tree_env(root: Path) -> dict[str, str]:
    """The environment of a process that runs mutants' tests in ``root``: they, and every process they start,
    import the package from ``root`` (``PYTHONPATH``), where the mutant is."""
    return {**os.environ, "PYTHONPATH": str(root)}


def test_command(module: str) -> str:
    """The tests of ``module``'s mutants, run in a scratch tree by a process with ``tree_env`` of that tree (the same
    command serves every worker, each in its own tree)."""
    tests, extra = MODULES[module]
    env = "PYTHONSAFEPATH=1 PYTHONDONTWRITEBYTECODE=1"
    options = "-x -q -p no:randomly -p no:cacheprovider --no-header -o addopts=--import-mode=importlib"
    quoted = " ".join(f"'{arg}'" for arg in extra)
    return f"env {env} {python()} -m pytest {options} {quoted} {' '.join(tests)}"


def write_config(module: str, worker_urls: Sequence[str] = ()) -> Path:
    """The session's cosmic-ray config: the local distributor, or the http one with ``worker_urls``."""
    config = STATE / f"{slug(module)}.toml"
    excluded = ", ".join(json.dumps(pattern) for pattern in EXCLUDED_OPERATORS)
    distributor = '[cosmic-ray.distributor]\nname = "local"\n'
    if worker_urls:
        urls = ", ".join(json.dumps(url) for url in worker_urls)
        distributor = (
            f'[cosmic-ray.distributor]\nname = "http"\n[cosmic-ray.distributor.http]\nworker-urls = [{urls}]\n'
        )
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {TIMEOUT_S.get(module, DEFAULT_TIMEOUT_S)}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(test_command(module))}\n"
        f"{distributor}"
        f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excluded}]\n"
    )
    return config


def source_hash(module: str) -> str:
    return hashlib.sha256((ROOT / module).read_bytes()).hexdigest()


def prepare_session(module: str) -> Path:
    """The module's session, created (init + the operator filter) if missing or made for other source."""
    session = STATE / f"{slug(module)}.sqlite"
    stamp = STATE / f"{slug(module)}.hash"
    config = write_config(module)
    if session.exists() and stamp.exists() and stamp.read_text() == source_hash(module):
        return session
    session.unlink(missing_ok=True)
    # a mutant counts as killed when its tests fail: they must pass without one
    baseline = subprocess.run(
        shlex.split(test_command(module)), cwd=tree(module), env=tree_env(tree(module)), capture_output=True, text=True
    )
    if baseline.returncode != 0:
        raise SystemExit(f"{module}: its tests fail without any mutant:\n{baseline.stdout[-3000:]}{baseline.stderr}")
    subprocess.run([tool("cosmic-ray"), "init", str(config), str(session)], cwd=tree(module), check=True)
    subprocess.run([tool("cr-filter-operators"), str(session), str(config)], cwd=tree(module), check=True)
    subprocess.run([tool("cr-filter-pragma"), str(session)], cwd=tree(module), check=True)
    stamp.write_text(source_hash(module))
    return session


def reopen_survivors(session: Path) -> int:
    """Make the session's surviving mutants pending again (after tests were added for them); returns how many."""
    from cosmic_ray.work_db import WorkDB, WorkResultStorage, use_db
    from cosmic_ray.work_item import TestOutcome

    with use_db(str(session), WorkDB.Mode.open) as db, db._session_maker.begin() as transaction:
        survivors = transaction.query(WorkResultStorage).filter(WorkResultStorage.test_outcome == TestOutcome.SURVIVED)
        return survivors.delete()


def reopen_worker_failures(session: Path) -> int:
    """Make pending again the mutants whose worker failed (cosmic-ray records them as incompetent with the worker's
    traceback, e.g. when a scratch tree was laid anew under a running worker): a failed worker is not a test outcome.
    Returns how many."""
    from cosmic_ray.work_db import WorkDB, WorkResultStorage, use_db
    from cosmic_ray.work_item import WorkerOutcome

    with use_db(str(session), WorkDB.Mode.open) as db, db._session_maker.begin() as transaction:
        failed = transaction.query(WorkResultStorage).filter(
            WorkResultStorage.worker_outcome == WorkerOutcome.EXCEPTION
        )
        return failed.delete()


class SessionLock:
    """One run per machine at a time: a second run would lay the scratch trees anew under the first one's workers."""

    path = STATE / "run.lock"

    def __enter__(self) -> SessionLock:
        try:
            pid = int(self.path.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            self.path.write_text(str(os.getpid()))
            return self
        raise SystemExit(f"[mutation] another run (pid {pid}) is using {STATE}; stop it first or wait for it")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_workers(module: str, workers: int, processes: list[subprocess.Popen]) -> list[str]:
    """``workers`` cosmic-ray http workers, each in its own scratch tree and with that tree's environment, each test
    process limited to one thread (the workers share the machine's cores); their URLs. Each process joins
    ``processes`` as soon as it starts, so that the caller stops it even if this is interrupted."""
    urls = []
    for worker in range(workers):
        lay_tree(module, worker)
        port = _free_port()
        env = {**tree_env(tree(module, worker)), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        processes.append(
            subprocess.Popen(
                [tool("cosmic-ray"), "http-worker", "--port", str(port)],
                cwd=tree(module, worker),
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:  # wait until each listens
        port = int(url.rsplit(":", 1)[1])
        for _ in range(300):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"cosmic-ray http-worker at {url} did not start")
    return urls


def execute(module: str, session: Path, deadline: float, workers: int = 1) -> bool:
    """Run the session's pending mutants until done or ``deadline``; True when it finished. With ``workers`` > 1,
    that many mutants run at once, each in its own scratch tree (cosmic-ray's http distributor)."""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    processes: list[subprocess.Popen] = []
    process = None
    try:
        urls = _start_workers(module, workers, processes) if workers > 1 else []
        config = write_config(module, urls)
        process = subprocess.Popen(
            [tool("cosmic-ray"), "exec", str(config), str(session)],
            cwd=tree(module),
            env=tree_env(tree(module)),
            start_new_session=True,
        )
        process.wait(timeout=left)
        return process.returncode == 0
    except subprocess.TimeoutExpired:
        return False
    finally:
        # past the deadline or interrupted (Ctrl-C, SIGTERM): stop cosmic-ray and the tests it runs (its own session)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
        for worker_process in processes:
            os.killpg(worker_process.pid, signal.SIGTERM)  # the worker and the tests it runs
            worker_process.wait()
        write_config(module)
        for worker in range(max(workers, 1)):
            lay_tree(module, worker)  # undo a mutant left in place


def earlier_notes() -> dict[tuple[str, str, str], str]:
    """Triage notes of the last report's survivors, by (module, operator, diff): a session rebuilt after its module
    changed numbers its mutants anew (other lines), but the same mutation of unchanged code deserves the same note.
    Only "equivalent" and "harmless" notes carry over: a mutant that survives again is not killed by any test."""
    report = DOCS / "report.json"
    if not report.exists():
        return {}
    notes = {}
    for module in json.loads(report.read_text())["modules"]:
        for survivor in module["survived"]:
            if (survivor["triage"] or "").startswith(("equivalent", "harmless")):
                notes[(module["module"], survivor["operator"], survivor["diff"])] = survivor["triage"]
    return notes


def outcomes(module: str, carried: dict[tuple[str, str, str], str] | None = None) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db

    session = STATE / f"{slug(module)}.sqlite"
    if not session.exists():
        return {"module": module, "total": 0, "pending": 0, "killed": 0, "survived": [], "incompetent": 0}
    triage = json.loads(TRIAGE.read_text()) if TRIAGE.exists() else {}
    carried = carried or {}
    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = sum(1 for _ in db.pending_work_items)
        total, killed, incompetent, survived = pending, 0, 0, []
        for item, result in db.completed_work_items:
            if result.worker_outcome.value == "skipped":  # an excluded operator or a pragma
                continue
            total += 1
            outcome = result.test_outcome.value if result.test_outcome is not None else result.worker_outcome.value
            if outcome == "killed":
                killed += 1
            elif outcome == "survived":
                (mutation,) = item.mutations
                key = f"{module}:{mutation.start_pos[0]}:{mutation.operator_name}:{mutation.occurrence}"
                diff = "\n".join(line for line in (result.diff or "").splitlines() if line[:1] in "+-")[:600]
                survived.append(
                    {
                        "key": key,
                        "line": mutation.start_pos[0],
                        "operator": mutation.operator_name,
                        "occurrence": mutation.occurrence,
                        "definition": mutation.definition_name,
                        "diff": diff,
                        "triage": triage.get(key) or carried.get((module, mutation.operator_name, diff)),
                    }
                )
            else:
                incompetent += 1
    survived.sort(key=lambda s: (s["line"], s["operator"]))
    return {
        "module": module,
        "total": total,
        "pending": pending,
        "killed": killed,
        "incompetent": incompetent,
        "survived": survived,
    }


def write_report() -> dict:
    carried = earlier_notes()
    modules = [outcomes(module, carried) for module in MODULES]
    triage = json.loads(TRIAGE.read_text()) if TRIAGE.exists() else {}
    new_keys = {s["key"]: s["triage"] for m in modules for s in m["survived"] if s["triage"] and s["key"] not in triage}
    if new_keys:  # carried-over notes are written down under their new keys
        TRIAGE.write_text(json.dumps(triage | new_keys, indent=1, ensure_ascii=False) + "\n")
    done = sum(m["killed"] + len(m["survived"]) for m in modules)
    killed = sum(m["killed"] for m in modules)
    notes = [s["triage"] or "" for m in modules for s in m["survived"]]
    killed_since = sum(note.startswith("killed now") for note in notes)
    equivalent = sum(note.startswith(("equivalent", "harmless")) for note in notes)
    non_equivalent = done - equivalent
    summary = {
        "tool": "cosmic-ray 8.7.0",
        "killed": killed,
        "survived": done - killed,
        "kill_rate": round(killed / done, 4) if done else None,
        # the survivors' triage: a test added since kills it (checked by applying it by hand, until the next run with
        # --recheck-survivors), or it is equivalent or harmless (left out of this rate)
        "survivors_killed_since": killed_since,
        "survivors_equivalent_or_harmless": equivalent,
        "kill_rate_after_triage": round((killed + killed_since) / non_equivalent, 4) if non_equivalent else None,
        "modules": modules,
    }
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "report.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    lines = [
        "# Mutation testing: report",
        "",
        "Written by `python scripts/mutation_test.py` (cosmic-ray 8.7.0, each module against the fast tests that",
        "exercise it; see the script's docstring). Kill rate = killed / (killed + survived); incompetent mutants",
        "(ones that cannot run, e.g. a broken import) are left out. Survivors carry their triage note from",
        "`triage.json`: the test that now kills it, or why it is equivalent or harmless. *Pending* mutants have not",
        "run yet: `python scripts/mutation_test.py` resumes there; `--recheck-survivors` reruns the survivors with the",
        "tests added since. Operators: cosmic-ray's, with its all-pairs binary and comparison replacements cut to the",
        "slips of the pen (see EXCLUDED_OPERATORS in the script).",
        "",
        "| module | mutants | run | killed | survived | incompetent | pending | kill rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in modules:
        run = m["total"] - m["pending"]
        scored = m["killed"] + len(m["survived"])
        rate = f"{m['killed'] / scored:.1%}" if scored else "-"
        lines.append(
            f"| `{m['module']}` | {m['total']} | {run} | {m['killed']} | {len(m['survived'])} | {m['incompetent']} "
            f"| {m['pending']} | {rate} |"
        )
    rate = f"{summary['kill_rate']:.1%}" if summary["kill_rate"] is not None else "-"
    lines += ["", f"Overall: {killed} killed of {done} run and scored ({rate})."]
    if summary["kill_rate_after_triage"] is not None:
        lines += [
            f"After triage: {killed_since} survivors are killed by tests added since, {equivalent} are equivalent or "
            f"harmless; {killed + killed_since} killed of {non_equivalent} non-equivalent "
            f"({summary['kill_rate_after_triage']:.1%}).",
        ]
    lines.append("")
    for m in modules:
        if not m["survived"]:
            continue
        lines += [f"## Survivors in `{m['module']}`", ""]
        for s in m["survived"]:
            note = s["triage"] or "**not triaged yet**"
            lines += [f"- line {s['line']}, `{s['operator']}` #{s['occurrence']} in `{s['definition']}`: {note}"]
            lines += ["  ```diff", *("  " + line for line in s["diff"].splitlines()), "  ```"]
        lines.append("")
    (DOCS / "report.md").write_text("\n".join(lines))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to run (default: all, in order: {', '.join(MODULES)})")
    parser.add_argument("--minutes", type=float, default=float("inf"), help="stop after this long (resumable)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite docs/mutation from the sessions")
    parser.add_argument(
        "--recheck-survivors", action="store_true", help="run the survivors again (with the tests added since)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="mutants run at once, each in its own scratch tree (default 1)"
    )
    args = parser.parse_args()
    # a SIGTERM (kill, a session's end) unwinds like Ctrl-C: execute's cleanup stops the workers and undoes the mutant
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {', '.join(MODULES)}")
    if not args.report_only:
        STATE.mkdir(exist_ok=True)
        deadline = time.monotonic() + args.minutes * 60
        with SessionLock():
            for module in args.modules or list(MODULES):
                lay_tree(module)
                session = prepare_session(module)
                if failed := reopen_worker_failures(session):
                    print(f"[mutation] {module}: {failed} mutants whose worker failed are pending again")
                if args.recheck_survivors:
                    print(f"[mutation] {module}: {reopen_survivors(session)} survivors pending again")
                finished = execute(module, session, deadline, args.workers)
                print(f"[mutation] {module}: {'finished' if finished else 'stopped (resume by running again)'}")
                write_report()
                if not finished:
                    break
    summary = write_report()
    for m in summary["modules"]:
        print(
            f"[mutation] {m['module']}: {m['killed']} killed, {len(m['survived'])} survived, "
            f"{m['incompetent']} incompetent, {m['pending']} pending of {m['total']}"
        )
    print(f"[mutation] kill rate so far: {summary['kill_rate']}; report in {DOCS.relative_to(ROOT)}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
