"""The differential oracle: run one program everywhere and compare.

For a program, ``check()``

1. evaluates it with the reference (``reference.py``);
2. runs it with ``cascade_vm.run`` for every configuration: engine "vm" and
   "graph", ``tail_cache`` and ``hot_path`` on and off, plus ``arun`` in a
   plain asyncio loop for each engine (when available), each run on a FRESH
   tree of ``LazyResult``s built from the AST (``build.py``);
3. if the program uses ``with_cache``, runs each engine once more *warm*
   (reusing the stores of the last cold run) against a warm reference;
4. compares, for every run:

   * the value (canonical form, ``library.canon``: exact container types,
     dict order, sets sorted) or the exception (type name and ``str()``;
     with several possible failures, any one of them; the note naming the
     failing task);
   * the multiset of task calls with their arguments (for a failed run: a
     sub-multiset of what the reference's complete evaluation runs);
   * resource set-up/tear-down counts (equal to the reference on success,
     balanced always);
   * events: ``RunStarted`` first, ``RunFinished`` last with the right
     ``ok``, one ``TaskFinished``/``TaskFailed`` per ``TaskStarted``, and on
     success as many ``TaskStarted`` per task name as the reference calls,
     and the same event counts (kind, task, reason) in every configuration;
   * a target with nothing lazy comes back as the very same object.

On any disagreement it raises ``Disagreement`` whose message holds the
program (as a runnable Python reproduction and as JSON), the VM disassembly,
the reference's prediction and every run's result.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import faulthandler
import gc
import io
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import library, reference
from .reference import Discard  # noqa: F401 - re-exported for the tests
from .workflow import (
    Cache,
    Call,
    EnvRef,
    Inject,
    MapCall,
    ParamRef,
    Program,
    Ref,
    all_policies,
    walk,
)

RUN_TIMEOUT = float(os.environ.get("FUZZ_RUN_TIMEOUT", "30"))


@dataclasses.dataclass(frozen=True)
class Config:
    engine: str  # "vm" or "graph"
    tail_cache: bool = True
    hot_path: bool = True
    via: str = "run"  # "run" (uvloop), "arun" (asyncio.run) or "dask" (run on a cluster)
    warm: bool = False  # reuse the with_cache stores of the last cold run
    yield_interval: float | None = None  # None: run()'s default; 0: yield at every check
    quiet: bool = False  # no listener, and a shape new to the first tier (firsttier.py)

    def __str__(self) -> str:
        s = f"{self.engine} tail_cache={int(self.tail_cache)} hot_path={int(self.hot_path)}"
        if self.via != "run":
            s += f" via={self.via}"
        if self.warm:
            s += " warm"
        if self.yield_interval is not None:
            s += f" yield_interval={self.yield_interval:g}"
        if self.quiet:
            s += " quiet"
        return s


RUN_CONFIGS = tuple(
    Config(e, t, h) for e in ("vm", "graph") for t in (True, False) for h in (True, False)
)
ARUN_CONFIGS = (Config("vm", via="arun"), Config("graph", via="arun"))
#: loops, batches and runs of links pause for the event loop at every check
YIELD_CONFIGS = (Config("vm", yield_interval=0), Config("graph", yield_interval=0))
#: no listener: a workflow of plain sync calls seen for the first time runs on the
#: first tier (its shape is forgotten before each such run); no events to check
QUIET_CONFIGS = (Config("vm", quiet=True), Config("graph", quiet=True))


def default_configs() -> tuple[Config, ...]:
    """The configurations of every check; with ``FUZZ_DASK=1`` (``make fuzz`` sets it
    when the ``dask`` extra is installed) also the Dask ones (on_dask.py)."""
    from . import features

    configs = (RUN_CONFIGS + YIELD_CONFIGS + QUIET_CONFIGS
               + (ARUN_CONFIGS if "arun" in features.available() else ()))
    if os.environ.get("FUZZ_DASK") == "1":
        configs += dask_configs()
    return configs


def dask_configs() -> tuple[Config, ...]:
    """Both engines on a Dask cluster, or none without the ``dask`` extra."""
    from . import on_dask

    return on_dask.DASK_CONFIGS if on_dask.available() else ()


@dataclasses.dataclass
class Observed:
    """One engine run."""

    config: Config
    ok: bool
    value: Any = None
    exc: BaseException | None = None
    calls: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    resources: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    events: list = dataclasses.field(default_factory=list)
    build_error: bool = False  # the exception came from building the LazyResults
    target: Any = None
    seconds: float = 0.0

    def result_text(self) -> str:
        if self.ok:
            if library.too_big(self.value):
                return "a huge value"
            return "value " + library.canon(self.value)
        where = " (raised while building the LazyResults)" if self.build_error else ""
        notes = getattr(self.exc, "__notes__", None)
        return f"raised {type(self.exc).__name__}: {self.exc}{where}" + (
            f" notes={notes}" if notes else ""
        )


class Disagreement(AssertionError):
    """The engines disagree with the reference or with each other."""

    def __init__(self, message: str, program: Program, problems: list[str]):
        super().__init__(message)
        self.program = program
        self.problems = problems


class AsyncioLog(logging.Handler):
    """Collects what asyncio logs during a check (e.g. 'Task exception was never
    retrieved': a task of the run left behind). Attached to the 'asyncio'
    logger, it also keeps those messages off stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage().splitlines()[0]
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            msg += f" ({type(exc).__name__}: {exc})"
        self.records.append(msg)

    def take(self) -> list[str]:
        out, self.records = self.records, []
        return out


@contextlib.contextmanager
def asyncio_log():
    log = logging.getLogger("asyncio")
    handler = AsyncioLog()
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


class Watchdog:
    """Ends the process when one engine run hangs (a deadlock is an engine bug).

    A run that never returns cannot be interrupted from Python reliably (the
    event loop may sit in ``epoll`` with no Python code running), so a daemon
    thread watches the clock instead. When a run exceeds ``FUZZ_RUN_TIMEOUT``
    seconds it saves the program to the corpus (so the hang is replayed as a
    test from then on), prints every thread's stack and exits with status 3.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed: tuple | None = None  # (deadline, program, config)
        self.thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, program: Program, config: Config, seconds: float):
        with self.lock:
            self.armed = (time.monotonic() + seconds, program, config)
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="fuzz-watchdog", daemon=True)
                self.thread.start()
        try:
            yield
        finally:
            with self.lock:
                self.armed = None

    def _loop(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                armed = self.armed
            if armed is None or time.monotonic() < armed[0]:
                continue
            _, program, config = armed
            from . import corpus

            problem = f"[{config}] the run hung (more than {RUN_TIMEOUT:g} s, FUZZ_RUN_TIMEOUT)"
            path = corpus.save(program, [problem])
            sys.stderr.write(f"\n{problem}\nsaved the workflow to {path}\n")
            faulthandler.dump_traceback(all_threads=True)
            sys.stderr.flush()
            os._exit(3)


WATCHDOG = Watchdog()


@contextlib.contextmanager
def environment(pairs: tuple):
    saved = {k: os.environ.get(k) for k, _ in pairs}
    try:
        for k, v in pairs:
            os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _nothing_lazy(program: Program) -> bool:
    lazy = (Call, MapCall, ParamRef, EnvRef, Inject, Ref)
    return not any(isinstance(x, lazy) for x in walk(program.target))


def run_once(built, config: Config, stores: dict, run_fn: Callable | None = None) -> Observed:
    """Run the program once with ``config`` on a fresh LazyResult tree."""
    import cascade_vm

    program = built.program
    state = library.reset()
    events: list = []
    obs = Observed(config, ok=False, events=events)
    t0 = time.perf_counter()
    kwargs: dict = {
        "engine": config.engine,
        "tail_cache": config.tail_cache,
        "hot_path": config.hot_path,
        "on_event": events.append,
    }
    if config.quiet:
        from cascade_graph import firsttier

        del kwargs["on_event"]
        firsttier.forget()
    if program.params:
        kwargs["params"] = dict(program.params)
    if config.yield_interval is not None:
        kwargs["yield_interval"] = config.yield_interval
    on_dask = None
    if config.via == "dask":
        from . import on_dask

        on_dask.begin()
        kwargs["executor"] = on_dask.executor()
    with environment(program.env), WATCHDOG.watch(program, config, RUN_TIMEOUT):
        try:
            target = built.target(stores)
        except Exception as exc:  # noqa: BLE001 - e.g. an eager arity check
            obs.exc, obs.build_error = exc, True
        else:
            obs.target = target
            try:
                if config.via == "arun":
                    obs.value = asyncio.run(cascade_vm.arun(target, **kwargs))
                else:
                    obs.value = (run_fn or cascade_vm.run)(target, **kwargs)
                obs.ok = True
            except Exception as exc:  # noqa: BLE001
                obs.exc = exc
    obs.seconds = time.perf_counter() - t0
    if on_dask is not None:
        on_dask.end(state)  # the calls made on the cluster
    obs.calls = collections.Counter(state.calls)
    obs.resources = collections.Counter(state.resources)
    return obs


def compare(ref: reference.Result, obs: Observed, program: Program, names: dict) -> list[str]:
    """Problems of one run against the reference (empty: they agree)."""
    problems = compare_one(ref, obs, program, names)
    if problems and ref.alternative is not None:
        if not compare_one(ref.alternative, obs, program, names):
            return []
    return problems


def compare_one(ref: reference.Result, obs: Observed, program: Program, names: dict) -> list[str]:
    """Problems of one run against one prediction of the reference."""
    out: list[str] = []
    tag = f"[{obs.config}]"
    o = ref.outcome
    if o.kind == "failed":
        if obs.ok:
            out.append(f"{tag} expected a failure ({o}), got {obs.result_text()}")
        else:
            match = [f for f in o.failures if f.matches(obs.exc)]
            if not match:
                out.append(f"{tag} expected {o}, got {type(obs.exc).__name__}: {obs.exc}")
            elif not obs.build_error and all(f.task is not None for f in match):
                text = str(obs.exc) + " " + " ".join(getattr(obs.exc, "__notes__", ()) or ())
                if not any(f.task in text for f in match):
                    out.append(
                        f"{tag} the exception neither says nor notes the failing task "
                        f"({' or '.join(sorted({f.task for f in match}))}): "
                        f"{type(obs.exc).__name__}: {obs.exc} "
                        f"notes={getattr(obs.exc, '__notes__', None)}"
                    )
        extra = obs.calls - ref.calls
        if extra and not ref.calls:
            out.append(f"{tag} must fail before any task runs, but ran {_fmt_calls(extra)}")
        elif extra:
            out.append(f"{tag} calls the reference never makes: {_fmt_calls(extra)}")
    else:
        expected = o.value if o.kind == "value" else None
        if not obs.ok:
            text = f"{tag} expected {o}, got {obs.result_text()}"
            if obs.exc is not None:  # an unexpected error: its traceback helps
                text += "\n" + "".join(traceback.format_exception(obs.exc)).rstrip()
            out.append(text)
        elif library.too_big(obs.value):
            out.append(f"{tag} value: expected {library.canon(expected)}, got a huge value")
        elif library.canon(obs.value) != library.canon(expected):
            out.append(
                f"{tag} value: expected {library.canon(expected)}, got {library.canon(obs.value)}"
            )
        elif _nothing_lazy(program) and obs.value is not obs.target:
            out.append(f"{tag} a target with nothing lazy must come back as the same object")
        if obs.calls != ref.calls:
            missing, extra = ref.calls - obs.calls, obs.calls - ref.calls
            out.append(
                f"{tag} calls differ: missing {_fmt_calls(missing) or '{}'}; "
                f"extra {_fmt_calls(extra) or '{}'}"
            )
        if obs.resources != ref.resources:
            out.append(
                f"{tag} resource set-up/tear-down counts: expected {dict(ref.resources)}, "
                f"got {dict(obs.resources)}"
            )
    if o.kind == "failed" or not obs.ok:
        for (what, name), k in obs.resources.items():
            torn = obs.resources["teardown", name]
            if what == "setup" and library.RESOURCES[name][1] != "function" and torn != k:
                out.append(f"{tag} resource {name}: {k} set-ups but {torn} tear-downs")
    out += check_events(obs, ref, names, tag)
    return out


def check_events(obs: Observed, ref: reference.Result, names: dict, tag: str) -> list[str]:
    if obs.build_error or obs.config.quiet:
        return []
    out = []
    ev = obs.events
    kinds = [type(e).__name__ for e in ev]
    if not ev or kinds[0] != "RunStarted":
        out.append(f"{tag} events: RunStarted is not first ({kinds[:3]})")
    if not ev or kinds[-1] != "RunFinished":
        out.append(f"{tag} events: RunFinished is not last ({kinds[-3:]})")
    elif ev[-1].ok != obs.ok:
        out.append(
            f"{tag} events: RunFinished.ok={ev[-1].ok} "
            f"but the run {'succeeded' if obs.ok else 'failed'}"
        )
    started = collections.Counter(e.task for e in ev if type(e).__name__ == "TaskStarted")
    ended = collections.Counter(
        e.task for e in ev if type(e).__name__ in ("TaskFinished", "TaskFailed")
    )
    started.pop("<target>", None)
    ended.pop("<target>", None)
    if started != ended:
        out.append(
            f"{tag} events: TaskStarted {dict(started)} vs TaskFinished+TaskFailed {dict(ended)}"
        )
    out += [f"{tag} events: {p}" for p in call_number_problems(ev)]
    if obs.ok and ref.outcome.kind != "failed":
        want = collections.Counter()
        for (label, _), k in ref.calls.items():
            want[names.get(label, label)] += k
        if started != want:
            out.append(f"{tag} events: TaskStarted per task {dict(started)}, expected {dict(want)}")
    return out


def call_number_problems(events: list) -> list[str]:
    """The call fields checked structurally: every ``call`` has one ``TaskStarted`` and
    then one ``TaskFinished``/``TaskFailed`` of the same task, ``TailCall`` and
    ``TaskRetrying`` follow their call's end, ``parent`` is a call that ended
    before, durations are >= 0 and a ``TaskSkipped`` has a number of its own."""
    out: list[str] = []
    started: dict = {}
    ended: set = set()
    skips: set = set()
    for e in events:
        kind = type(e).__name__
        call = getattr(e, "call", None)
        if kind == "TaskStarted":
            if call in started or call in skips or not call:
                out.append(f"call {call} of {e.task} started twice or has no number")
            started[call] = e.task
            if e.parent is not None and e.parent not in ended:
                out.append(f"call {call} of {e.task}: parent {e.parent} has not ended")
        elif kind in ("TaskFinished", "TaskFailed"):
            if started.get(call) != e.task or call in ended:
                out.append(f"{kind} of {e.task}: call {call} not started, or ended twice")
            if not e.duration >= 0:
                out.append(f"{kind} of {e.task}: duration {e.duration}")
            ended.add(call)
        elif kind in ("TailCall", "TaskRetrying") and call not in ended:
            out.append(f"{kind} of {e.task}: call {call} has not ended")
        elif kind == "TaskSkipped":
            if call in started or call in skips or not call:
                out.append(f"TaskSkipped of {e.task}: call {call} is not its own")
            skips.add(call)
    if set(started) != ended:
        out.append(f"calls started but never ended: {sorted(set(started) - ended)}")
    return out[:5]


def _drop_tracebacks(obs: Observed) -> None:
    errors = [obs.exc] + [getattr(e, "error", None) for e in obs.events]
    seen: set = set()
    while errors:
        exc = errors.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        exc.__traceback__ = None
        errors += [exc.__context__, exc.__cause__]


def event_signature(obs: Observed) -> collections.Counter:
    sig: collections.Counter = collections.Counter()
    for e in obs.events:
        k = type(e).__name__
        if k in ("RunStarted", "RunFinished"):
            continue
        extra = (
            getattr(e, "reason", None) or getattr(e, "target", None) or getattr(e, "scope", None)
        )
        who = getattr(e, "task", None) or getattr(e, "resource", None)
        sig[(k, who, extra)] += 1
    return sig


def cross_compare(observed: list[Observed]) -> list[str]:
    """Successful runs of the same warmth must emit the same events."""
    out = []
    for warm in (False, True):
        runs = [o for o in observed if o.ok and o.config.warm == warm and not o.config.quiet]
        if len(runs) < 2:
            continue
        base = event_signature(runs[0])
        for o in runs[1:]:
            sig = event_signature(o)
            if sig != base:
                a, b = base - sig, sig - base
                out.append(
                    f"[{o.config}] events differ from [{runs[0].config}]: "
                    f"only in the first {dict(a)}; only here {dict(b)}"
                )
    return out


def _fmt_calls(c: collections.Counter) -> str:
    return (
        "{"
        + ", ".join(
            f"{lab}{args}" + (f" x{k}" if k > 1 else "") for (lab, args), k in sorted(c.items())
        )
        + "}"
    )


def disassembly(built) -> str:
    try:
        from cascade_vm import vm

        buf = io.StringIO()
        with environment(built.program.env):
            vm.disassemble(built.target({}), file=buf)
        return buf.getvalue().rstrip()
    except Exception as exc:  # noqa: BLE001 - best effort
        return f"<no disassembly: {type(exc).__name__}: {exc}>"


def report(
    program: Program, ref: reference.Result, observed: list[Observed], problems: list[str], built
) -> str:
    from . import workflow

    lines = ["differential disagreement", "", "problems:"]
    lines += ["  " + p.replace("\n", "\n    ") for p in problems]
    lines += ["", "program (Python reproduction):", workflow.to_python(program).rstrip()]
    lines += ["", "program (JSON):", workflow.dumps(program)]
    lines += ["", "VM disassembly:", disassembly(built)]
    lines += ["", f"reference: {ref.outcome}", f"reference calls: {_fmt_calls(ref.calls)}"]
    if ref.alternative is not None:
        lines.append(f"reference (also acceptable): {ref.alternative.outcome}, no call")
    if ref.resources:
        lines.append(f"reference resources: {dict(ref.resources)}")
    lines.append("")
    for o in observed:
        lines.append(f"[{o.config}] {o.result_text()}  ({o.seconds * 1000:.1f} ms)")
        if o.calls != ref.calls:
            lines.append(f"    calls: {_fmt_calls(o.calls)}")
    return "\n".join(lines)


@dataclasses.dataclass
class CheckResult:
    reference: reference.Result
    observed: list


def check(
    program: Program,
    configs: tuple[Config, ...] | None = None,
    run_fn: Callable | None = None,
    fail_fast: bool = False,
) -> CheckResult:
    """Run ``program`` on the reference and every configuration; raise on disagreement.

    Raises ``reference.Discard`` when the example is not worth running.
    ``run_fn`` replaces ``cascade_vm.run`` (the harness's own tests use it).
    ``fail_fast``: stop at the first configuration that disagrees (cheap
    shrinking; re-check the minimal example without it for the full report).
    """
    from .build import Built

    ref = reference.evaluate(program)
    built = Built(program)
    names = {lt.label: lt.task_name for lt in program.loops}
    configs = configs if configs is not None else default_configs()
    observed: list[Observed] = []
    problems: list[str] = []
    stores: dict = {}
    # A task an engine leaves behind with an exception is only reported (by
    # asyncio, through logging) when it is collected: after each failed run
    # the oracle drops the tracebacks that keep it alive and collects. With
    # everything older frozen, that collection only scans the run's objects.
    gc.freeze()
    try:
        with asyncio_log() as log:
            for cfg in configs:
                stores = {}
                obs = run_once(built, cfg, stores, run_fn)
                observed.append(obs)
                problems += compare(ref, obs, program, names)
                if obs.exc is not None:
                    _drop_tracebacks(obs)
                    gc.collect()
                problems += [f"[{cfg}] asyncio logged: {m}" for m in log.take()]
                if problems and fail_fast:
                    break
    finally:
        gc.unfreeze()
    uses_cache = any(isinstance(p, Cache) for p in all_policies(program))
    if uses_cache and ref.outcome.kind != "failed" and not problems:
        warm_ref = reference.evaluate(program, cache=ref.cache)
        for engine in ("vm", "graph"):
            obs = run_once(built, Config(engine, warm=True), stores, run_fn)
            observed.append(obs)
            problems += compare(warm_ref, obs, program, names)
    if not problems:
        problems += cross_compare(observed)
    if problems:
        raise Disagreement(report(program, ref, observed, problems, built), program, problems)
    return CheckResult(ref, observed)
