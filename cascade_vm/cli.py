"""The command line: ``python -m cascade_vm run|dis|graph FLOW.py``.

A *flow* is a Python file. The CLI imports it as a module and looks up one
attribute of it, the *target* (``--target``, default ``main``):

- a ``LazyResult``: the workflow itself;
- a task (``@task`` function): called with its parameters filled from
  ``-p NAME=VALUE``, each string converted by the parameter's annotation;
- a ``list``/``tuple``/``dict``/``set`` holding lazies (at any depth).

``Param`` values reachable from the target come from ``-p`` too: the CLI
passes the strings to ``run(params=...)`` and the engine converts them with
each ``Param``'s ``type``.

Exit codes (the contract, docs/cli.md):

====  ==========================================================================
0     success; the result is printed (``--json``: as JSON)
1     a task failed, or the engine found an error at run time: one line
      naming the task and the error on stderr, then the user's traceback
2     bad usage or bad input: one clear line on stderr, no traceback
130   interrupted (Ctrl-C): tasks cancelled, resources torn down
====  ==========================================================================

Layout of this module: the parser, then loading the flow, then resolving
the target and its parameters, then the three commands, then error
formatting. Every bad-input path raises ``UsageError``; ``main`` is the one
place that turns exceptions into exit codes.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import json
import math
import os
import re
import sys
import traceback
import types
import typing
from pathlib import Path

from . import cli_observe

PROG = "python -m cascade_vm"

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE

#: Module-name prefix for imported flows (``FLOW.py`` -> ``cascade_flow_FLOW``).
FLOW_MODULE_PREFIX = "cascade_flow_"

#: Containers searched for lazies, exactly as the engines search arguments.
CONTAINERS = (list, tuple, dict, set)

#: Words ``bool`` parameters accept (any case), as ``Param(type=bool)`` does.
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


class UsageError(Exception):
    """Bad usage or bad input: exit 2 with this one-line message."""


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``error: ...``), exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _parse_param(text: str) -> tuple[str, str]:
    """Split one ``-p NAME=VALUE`` into ``(name, value)``."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"-p expects NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    """The parser for every command (``run``, ``dis``, ``graph``, ``--version``)."""
    parser = _Parser(
        prog=PROG,
        description="Run, disassemble or draw a Cascade workflow defined in a Python file.",
        epilog="exit codes: 0 success, 1 a task failed, 2 bad usage or input, 130 interrupted. "
        f"Try '{PROG} run examples/countdown_agent.py -p steps=5'.",
    )
    parser.add_argument(
        "--version", action="store_true", help="print the version of cascade and exit"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, add_help=False)
        sub.add_argument(
            "-h", "--help", action="store_true",
            help="show this help, with the parameters of the flow's target when FLOW.py is given",
        )
        sub.add_argument("flow", metavar="FLOW.py", nargs="?",
                         help="the Python file defining the workflow")
        sub.add_argument(
            "--target",
            default="main",
            metavar="NAME",
            help="the module attribute to run (default: main)",
        )
        sub.add_argument(
            "-p",
            "--param",
            dest="params",
            action="append",
            default=[],
            type=_parse_param,
            metavar="NAME=VALUE",
            help="a parameter value: a Param of the workflow or an argument of a task target "
            "(repeatable; the last value of a name wins)",
        )
        return sub

    run = add_command("run", "run the workflow and print its result")
    run.add_argument(
        "--engine",
        default="vm",
        choices=("vm", "graph"),
        help="the engine: the register VM (default) or the graph executor",
    )
    run.add_argument(
        "--json", action="store_true", help="print the result as JSON instead of with print()"
    )
    cli_observe.add_arguments(run)
    _add_cluster_options(run)
    add_command("dis", "print the VM's instructions for the workflow")
    add_command("graph", "print the workflow's graph as Graphviz DOT")
    return parser


# --------------------------------------------------------------------------- loading


def _module_name_for(path: Path) -> str:
    """A module name for the flow at ``path``: stable across processes, unique in this one.

    Stable so that the persistent result cache (keyed by ``module.qualname``)
    finds the same entries on the next run; unique so that two flows with the
    same file name never replace each other in ``sys.modules``.
    """
    stem = re.sub(r"\W", "_", path.stem) or "flow"
    base = FLOW_MODULE_PREFIX + stem
    name, n = base, 1
    while True:
        existing = sys.modules.get(name)
        file = getattr(existing, "__file__", None)
        if existing is None or (file is not None and Path(file).resolve() == path):
            return name
        n += 1
        name = f"{base}_{n}"


def _where(exc: BaseException, path: Path) -> str:
    """``' (FLOW.py, line N)'`` for the innermost frame of ``exc`` in the flow file, or ``''``."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename and Path(frame.filename).resolve() == path:
            line = frame.lineno
    return "" if line is None else f" ({path.name}, line {line})"


def load_flow(flow: str) -> types.ModuleType:
    """Import the file ``flow`` as a fresh module; its folder goes on ``sys.path``.

    The module is in ``sys.modules`` before its code runs, so dataclasses,
    pickling and ``typing.get_type_hints`` find it. Raises ``UsageError`` for
    a missing file or a flow that fails to import.
    """
    path = Path(flow).expanduser()
    if not path.exists():
        raise UsageError(f"no such file: {flow}")
    if path.is_dir():
        raise UsageError(f"{flow} is a directory; give the Python file that defines the workflow")
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = _module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {flow}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = exc.filename or flow
        if exc.filename and Path(exc.filename).resolve() == path:
            where = flow
        detail = exc.msg if exc.lineno is None else f"line {exc.lineno}: {exc.msg}"
        raise UsageError(
            f"cannot import {flow}: {type(exc).__name__} in {where}, {detail}"
        ) from None
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit on import is a broken flow too
        sys.modules.pop(name, None)
        raise UsageError(
            f"cannot import {flow}: {_describe(exc)}{_where(exc, path)}"
        ) from None
    return module


# --------------------------------------------------------------------------- targets


def _engine_types() -> tuple[type, type]:
    """``(LazyResult, Task)`` from the language package."""
    from cascade_graph import LazyResult, Task

    return LazyResult, Task


def _holds_lazy(value: object, lazy_type: type) -> bool:
    """Whether ``value`` is, or holds at any depth of builtin containers, a ``LazyResult``
    (or a ``Router``, which becomes one in a container target)."""
    from cascade_graph import Router

    lazy_type = (lazy_type, Router)
    stack = [value]
    seen: set[int] = set()  # a module-level list may contain itself
    while stack:
        item = stack.pop()
        if isinstance(item, lazy_type):
            return True
        kind = type(item)
        if kind in CONTAINERS:
            if id(item) in seen:
                continue
            seen.add(id(item))
        if kind is dict:
            stack.extend(item.values())
        elif kind in CONTAINERS:
            stack.extend(item)
    return False


def workflows_in(module: types.ModuleType) -> list[str]:
    """Names of the module's attributes that can be run: task calls and tasks.

    ``Param`` and ``Env`` values are lazies too, but not workflows of their own.
    """
    from cascade_graph.lazy import CALL

    lazy_type, task_type = _engine_types()
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (
            isinstance(value, task_type)
            or (isinstance(value, lazy_type) and getattr(value, "kind", CALL) == CALL)
        )
    )


def find_target(module: types.ModuleType, name: str, flow: str) -> object:
    """The attribute ``name`` of the flow, checked to be something the engines can run."""
    lazy_type, task_type = _engine_types()
    try:
        value = getattr(module, name)
    except AttributeError:
        available = workflows_in(module)
        hint = (
            f"workflows available: {', '.join(available)}"
            if available
            else "it defines no workflow (a module-level task call or @task function)"
        )
        raise UsageError(f"no target {name!r} in {flow}; {hint}") from None
    if isinstance(value, (lazy_type, task_type)):
        return value
    if type(value) in CONTAINERS and _holds_lazy(value, lazy_type):
        return value
    fix = (
        f"set {name} = some_task(...) (a task call), decorate a function with @task, "
        "or make it a list/tuple/dict of task calls"
    )
    if type(value) in CONTAINERS:
        what = f"a {type(value).__name__} with no task call inside"
    elif inspect.isroutine(value):
        what = "a plain function"
        fix = f"decorate {name} with @task, or set {name} = some_task(...)"
    else:
        kind = type(value).__name__
        what = f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"
    raise UsageError(f"target {name!r} in {flow} is {what}, not a workflow: {fix}")


# --------------------------------------------------------------------------- parameters


def _annotations(fn: typing.Callable) -> dict[str, object]:
    """The function's annotations, resolved when they are strings (PEP 563)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable names: fall back to the raw annotations
        return dict(getattr(fn, "__annotations__", {}) or {})


def _unwrap_optional(annotation: object) -> object:
    """``X | None`` and ``Optional[X]`` -> ``X``; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def parse_bool(text: str) -> bool:
    """``true/false/1/0/yes/no`` (also ``y/n/on/off``, any case) -> ``bool``; else ValueError."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected true/false/1/0/yes/no")


def convert(text: str, annotation: object) -> object:
    """Convert a ``-p`` string by a parameter's annotation.

    No annotation, ``str`` or ``Any``: the string. ``bool``: ``parse_bool``.
    ``list``/``tuple``/``set``/``dict`` (also parametrised, e.g. ``list[int]``):
    the string parsed as JSON. Anything else callable: called on the string.
    Raises ``ValueError`` (or whatever the converter raises) on a bad value.
    """
    annotation = _unwrap_optional(annotation)
    if annotation in (inspect.Parameter.empty, str, typing.Any, object) or isinstance(
        annotation, str
    ):
        return text
    if annotation is bool:
        return parse_bool(text)
    origin = typing.get_origin(annotation) or annotation
    if origin in (list, tuple, set, frozenset, dict):
        value = json.loads(text)
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError(f"expected a JSON object, got {text!r}")
            return value
        if not isinstance(value, list):
            raise ValueError(f"expected a JSON array, got {text!r}")
        return origin(value)
    if callable(annotation):
        return annotation(text)
    return text


def _type_name(annotation: object) -> str:
    annotation = _unwrap_optional(annotation)
    return getattr(annotation, "__name__", None) or str(annotation)


class TaskCall(typing.NamedTuple):
    """A task target's arguments built from ``-p``."""

    args: list  # positional-only parameters, in order
    kwargs: dict  # every other parameter given with -p
    accepts: frozenset  # every parameter name -p may fill
    var_keyword: bool  # the function takes **kwargs: leftover -p names go there


def bind_task(task_obj: object, values: dict[str, str], flow: str) -> TaskCall:
    """Build a task target's arguments from the ``-p`` strings ``values``.

    Each value is converted by the parameter's annotation. A parameter with a
    default may be left out; one whose default is ``inject(...)`` is left to
    the engine (``-p`` cannot name it). A missing required parameter, or a
    value its annotation rejects, is a ``UsageError``.
    """
    from cascade_graph.lazy import Inject

    fn = task_obj.fn
    name = getattr(task_obj, "name", None) or getattr(fn, "__name__", "task")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise UsageError(
            f"cannot read the parameters of task {name!r} in {flow}; "
            f"set a module-level call instead (main = {name}(...))"
        ) from None
    hints = _annotations(fn)
    args: list[object] = []
    kwargs: dict[str, object] = {}
    accepts: set[str] = set()
    missing: list[str] = []
    var_keyword = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL or type(param.default) is Inject:
            continue  # resources are injected by the engine, not given with -p
        if param.kind is param.VAR_KEYWORD:
            var_keyword = True
            continue
        accepts.add(param.name)
        if param.name not in values:
            if param.default is param.empty:
                missing.append(param.name)
            elif param.kind is param.POSITIONAL_ONLY:
                args.append(param.default)
            continue
        annotation = hints.get(param.name, param.annotation)
        text = values[param.name]
        try:
            value = convert(text, annotation)
        except Exception as exc:  # noqa: BLE001 - any converter's error is a bad value
            raise UsageError(
                f"bad value for parameter {param.name!r} of task {name!r}: "
                f"expected {_type_name(annotation)}, got {text!r} ({_describe(exc)})"
            ) from None
        if param.kind is param.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[param.name] = value
    if missing:
        give = " ".join(f"-p {m}=VALUE" for m in missing)
        noun = "parameter" if len(missing) == 1 else "parameters"
        raise UsageError(
            f"missing {noun} {', '.join(repr(m) for m in missing)} of task {name!r} "
            f"in {flow}: give {give}"
        )
    return TaskCall(args, kwargs, frozenset(accepts), var_keyword)


def _free_module_params(module: types.ModuleType, find_params: typing.Callable) -> list[object]:
    """Module-level ``Param``s that no module-level workflow reaches.

    Those are the ones a task may use in a tail call (``return step(STEPS)``),
    which no walk from the target can see. A module-level ``Param`` that some
    other workflow of the module reaches belongs to that workflow, not to
    every target.
    """
    from cascade_graph import Param

    lazy_type, _ = _engine_types()
    bound = [v for v in vars(module).values() if isinstance(v, Param)]
    if not bound:
        return []
    reached: set[int] = set()
    for value in vars(module).values():
        if isinstance(value, Param):
            continue
        if isinstance(value, lazy_type) or (
            type(value) in CONTAINERS and _holds_lazy(value, lazy_type)
        ):
            reached.update(id(p) for p in find_params(value))
    return [p for p in bound if id(p) not in reached]


def resolve(
    target: object, module: types.ModuleType, pairs: list[tuple[str, str]], flow: str
) -> tuple[object, dict[str, str]]:
    """The workflow to run and the ``params=`` for ``run()``.

    A task target becomes a call with its arguments from ``-p``. A ``-p``
    value fills every parameter of its name: the task's argument and the
    workflow's ``Param`` (one reachable from the target, or one bound at module
    level that no other workflow of the module reaches: see
    ``_free_module_params``).
    A name matching none of them is a ``UsageError``, unless the task takes
    ``**kwargs``: then it goes there, as a string.
    """
    _, task_type = _engine_types()
    values = dict(pairs)  # the last value of a name wins
    call = None
    if isinstance(target, task_type):
        call = bind_task(target, values, flow)
        workflow = target(*call.args, **call.kwargs)
    else:
        workflow = target

    from cascade_graph.params import find_params

    found = find_params(workflow) + _free_module_params(module, find_params)
    param_names = {p.name for p in found}
    run_params = {k: v for k, v in values.items() if k in param_names}
    accepts = call.accepts if call else frozenset()
    unknown = [k for k in values if k not in param_names and k not in accepts]
    if unknown and call is not None and call.var_keyword:
        extra = {k: values[k] for k in unknown}
        workflow = target(*call.args, **call.kwargs, **extra)
        unknown = []
    if unknown:
        known = sorted(param_names | accepts)
        tail = f"known: {', '.join(known)}" if known else "this workflow takes no parameters"
        raise UsageError(f"no parameter named {unknown[0]!r}; {tail}")
    return workflow, run_params


# --------------------------------------------------------------------------- a cluster


def _add_cluster_options(run: argparse.ArgumentParser) -> None:
    """``--workers N`` / ``--scheduler ADDRESS``: task calls on a Dask cluster (SPEC 8)."""
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, metavar="N",
        help="run sync tasks on a temporary local Dask cluster of N worker processes "
        "(needs the 'dask' extra)",
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="run sync tasks on the Dask cluster of this scheduler, e.g. tcp://host:8786 "
        "(needs the 'dask' extra); the flow file is sent to its workers",
    )


def _cluster_executor(args: argparse.Namespace) -> dict[str, object]:
    """``{"executor": DaskExecutor(...)}`` for ``--workers``/``--scheduler``, else ``{}``.

    The flow's module and the modules it imported from its own folder are sent
    to the workers under the names they have here, so tasks pickle by reference
    on workers that never saw the file (started by hand, anywhere).
    """
    if args.workers is None and args.scheduler is None:
        return {}
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers needs a number of worker processes >= 1, got {args.workers}")
    from cascade_graph.executors import DaskExecutor, require_distributed

    try:
        require_distributed()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    if args.workers is not None:
        executor = DaskExecutor(n_workers=args.workers)
    else:
        executor = DaskExecutor(address=args.scheduler)
    for path, name in _flow_files(Path(args.flow).expanduser().resolve()):
        executor.upload(path, name)
    return {"executor": executor}


def _flow_files(path: Path) -> list[tuple[str, str]]:
    """(file, module name) of the loaded flow at ``path`` and of the single-file modules
    it imported from its folder, those first (the flow imports them when it loads)."""
    flow = sys.modules[_module_name_for(path)]
    folder = path.parent
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if module is flow or not file or not file.endswith(".py") or "." in name:
            continue
        if Path(file).resolve().parent == folder and Path(file).stem == name:
            found.append((file, name))
    found.append((str(path), flow.__name__))
    return found


# --------------------------------------------------------------------------- commands


def _prepare(args: argparse.Namespace) -> tuple[object, dict[str, str]]:
    module = load_flow(args.flow)
    target = find_target(module, args.target, args.flow)
    return resolve(target, module, args.params, args.flow)


class TaskFailure(Exception):
    """The engine raised ``error`` (a task's exception, or one found at run time): exit 1."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _engine_call(fn: typing.Callable, *args: object, **kwargs: object) -> object:
    """Call into an engine; a ``ParameterError`` is bad input, any other error a failure."""
    from cascade_graph import ParameterError

    try:
        return fn(*args, **kwargs)
    except ParameterError as exc:
        raise UsageError(_describe(exc).partition(": ")[2] or type(exc).__name__) from None
    except Exception as exc:  # noqa: BLE001 - every other error is the run's failure: exit 1
        raise TaskFailure(exc) from None


# --------------------------------------------------------------------------- help


class ParamInfo(typing.NamedTuple):
    """One parameter a target takes with ``-p``, as ``--help`` lists it."""

    name: str
    type: str
    default: str  # the default's repr, or "" when required
    help: str
    required: bool


def _task_param_infos(task_obj: object) -> list[ParamInfo]:
    """The parameters ``-p`` may fill on a task target (resources and ``*args`` left out)."""
    from cascade_graph.lazy import Inject

    try:
        signature = inspect.signature(task_obj.fn)
    except (TypeError, ValueError):
        return []
    hints = _annotations(task_obj.fn)
    infos = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if type(param.default) is Inject:
            continue
        annotation = hints.get(param.name, param.annotation)
        kind = "str" if annotation is param.empty else _type_name(annotation)
        required = param.default is param.empty
        default = "" if required else repr(param.default)
        infos.append(ParamInfo(param.name, kind, default, "", required))
    return infos


def _param_info(p: object) -> ParamInfo:
    """A workflow ``Param`` as ``--help`` lists it."""
    kind = getattr(p.type, "__name__", None) or repr(p.type)
    default = "" if p.required else repr(p.default)
    return ParamInfo(p.name, kind, default, p.help or "", p.required)


def target_parameters(target: object, module: types.ModuleType) -> list[ParamInfo]:
    """Every parameter of ``target``: a task target's arguments, then the ``Param``s it
    reaches (and the module's free ones, see ``_free_module_params``), by name once."""
    from cascade_graph.params import find_params

    _, task_type = _engine_types()
    infos: list[ParamInfo] = []
    if isinstance(target, task_type):
        infos = _task_param_infos(target)
        reached = []
    else:
        reached = find_params(target)
    found = reached + _free_module_params(module, find_params)
    names = {i.name for i in infos}
    for p in found:
        if p.name not in names:
            names.add(p.name)
            infos.append(_param_info(p))
    return infos


def format_parameters(infos: list[ParamInfo], target: str, flow: str) -> str:
    """The parameters as a table: name, type, default (or ``required``), help."""
    if not infos:
        return f"the target {target!r} of {flow} takes no parameters\n"
    rows = [("NAME", "TYPE", "DEFAULT", "HELP")]
    rows += [(i.name, i.type, "required" if i.required else i.default, i.help) for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    lines = [f"parameters of {target!r} in {flow} (give each with -p NAME=VALUE):"]
    for row in rows:
        cells = [row[c].ljust(widths[c]) for c in range(3)] + [row[3]]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def command_help(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``COMMAND [FLOW.py] --help``: the command's options, then the target's parameters."""
    text = _subparser(parser, args.command).format_help()
    if args.flow is not None:
        module = load_flow(args.flow)
        target = find_target(module, args.target, args.flow)
        infos = target_parameters(target, module)
        text += "\n" + format_parameters(infos, args.target, args.flow)
    sys.stdout.write(text)
    return EXIT_OK


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of ``command`` (``run``, ``dis`` or ``graph``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise AssertionError(f"no command {command!r}")


# --------------------------------------------------------------------------- commands (cont.)


def command_run(args: argparse.Namespace) -> int:
    """``run``: run the workflow on the chosen engine and print the result."""
    target, params = _prepare(args)
    from cascade_vm import run

    placement = _cluster_executor(args)
    with cli_observe.observing(args, UsageError) as on_event:
        result = _engine_call(run, target, engine=args.engine, params=params, on_event=on_event,
                              **placement)
    print(to_json(result) if args.json else _printable(result))
    return EXIT_OK


def _printable(result: object) -> str:
    """``str(result)``; a ``__str__`` that raises is bad output: ``UsageError``."""
    try:
        return str(result)
    except Exception as exc:  # noqa: BLE001 - the result's own __str__ failed
        raise UsageError(
            f"the result (a {type(result).__name__}) cannot be printed: its __str__ raised "
            f"{_describe(exc)}"
        ) from None


#: Deepest nesting ``--json`` writes: JSON readers stop far below Python's own
#: limits (Python's ``json`` module at about 1,000 levels), so deeper is an error.
MAX_JSON_DEPTH = 500


def to_json(result: object) -> str:
    """The result as JSON text that any JSON reader reads back exactly, else ``UsageError``.

    Refused: NaN and infinities (not JSON), dict keys that become the same
    JSON key (``{1: ..., "1": ...}``), nesting deeper than ``MAX_JSON_DEPTH``,
    and whatever ``json.dumps`` rejects (a set, an object, a cycle).
    """
    problem = _json_problem(result)
    if problem is None:
        try:
            return json.dumps(result, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            problem = _describe(exc)
    raise UsageError(f"the result cannot be written as JSON: {problem}; run without --json")


def _json_key(key: object) -> str | None:
    """The JSON object key ``json.dumps`` writes for ``key`` (None: it rejects the key)."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return json.dumps(key)
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return float.__repr__(key)
    return None


def _json_problem(value: object) -> str | None:
    """What keeps ``value`` from being exact JSON (one phrase naming where), or None.

    Iterative: a result nested deeper than the interpreter's stack is reported,
    not a ``RecursionError``. Each container is checked once (a cycle is left to
    ``json.dumps``, which names it).
    """
    stack: list = [(value, 1, ("result",))]
    seen: set[int] = set()
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{_where_in(where)} is {_shown(item)}, which JSON cannot hold"
            continue
        if not isinstance(item, (list, tuple, dict)) or id(item) in seen:
            continue
        seen.add(id(item))
        if depth > MAX_JSON_DEPTH:
            return (f"it is nested more than {MAX_JSON_DEPTH} levels deep, more than JSON "
                    "readers accept")
        if isinstance(item, dict):
            keys: dict[str, object] = {}
            for key, sub in item.items():
                text = _json_key(key)
                if text is not None and text in keys:
                    return (f"{_where_in(where)} has keys {_shown(keys[text])} and {_shown(key)}, "
                            f"which are both the JSON key {json.dumps(text)}")
                if text is not None:
                    keys[text] = key
                if isinstance(key, float) and not math.isfinite(key):
                    return f"{_where_in(where)} has the key {_shown(key)}, which JSON cannot hold"
                stack.append((sub, depth + 1, (where, key)))
        else:
            stack.extend((sub, depth + 1, (where, i)) for i, sub in enumerate(item))
    return None


def _where_in(where: tuple) -> str:
    """``result[0]['a']`` from the nested ``(parent, key)`` pairs ``_json_problem`` keeps."""
    keys = []
    while len(where) == 2:
        where, key = where
        keys.append(key)
    return "result" + "".join(f"[{_shown(k)}]" for k in reversed(keys))


def command_dis(args: argparse.Namespace) -> int:
    """``dis``: print the VM's instruction listing for the workflow."""
    target, _ = _prepare(args)
    from cascade_vm.vm import disassemble

    listing = io.StringIO()  # written out whole: no half listing if the compiler fails
    _engine_call(disassemble, target, file=listing)
    sys.stdout.write(listing.getvalue())
    return EXIT_OK


def command_graph(args: argparse.Namespace) -> int:
    """``graph``: print the workflow's graph as Graphviz DOT."""
    target, _ = _prepare(args)
    from cascade_graph.plan import to_dot

    dot = _engine_call(to_dot, target)
    sys.stdout.write(dot if dot.endswith("\n") else dot + "\n")
    return EXIT_OK


COMMANDS = {"run": command_run, "dis": command_dis, "graph": command_graph}


def version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        return dist_version("cascade")
    except PackageNotFoundError:
        pass
    try:
        import cascade_vm

        return str(cascade_vm.__version__)
    except (ImportError, AttributeError):
        return "unknown"


# --------------------------------------------------------------------------- errors

#: Frames from these packages are the engine's (or the event loop's), not the user's.
_ENGINE_PACKAGES = ("cascade_graph", "cascade_vm", "asyncio", "uvloop", "concurrent", "threading")


def _engine_dirs() -> tuple[str, ...]:
    dirs = []
    for name in _ENGINE_PACKAGES:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if file is None:
            continue
        path = os.path.dirname(os.path.abspath(file))
        if os.path.basename(file) == "__init__.py" or name in ("cascade_graph", "cascade_vm"):
            dirs.append(path + os.sep)
        else:  # a single-file module such as threading.py
            dirs.append(os.path.abspath(file))
    return tuple(dirs)


#: Relative file names of compiled frames (e.g. ``uvloop/loop.pyx``) from those packages.
_ENGINE_PREFIXES = tuple(f"{name}/" for name in _ENGINE_PACKAGES)


def _is_user_frame(frame: traceback.FrameSummary, engine_dirs: tuple[str, ...]) -> bool:
    filename = frame.filename
    if not filename or filename.startswith(("<frozen ", *_ENGINE_PREFIXES)):
        return False
    return not os.path.abspath(filename).startswith(engine_dirs)


def user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback with the engine's and the event loop's frames dropped.

    Chained exceptions (``__cause__``, ``__context__``, groups) are filtered
    the same way; a chained exception with no user frame at all is left out
    (it is the engine's own bookkeeping, e.g. a ``CancelledError``).
    """
    engine_dirs = _engine_dirs()
    root = traceback.TracebackException.from_exception(exc, compact=True)
    stack = [root]
    while stack:
        te = stack.pop()
        te.stack = traceback.StackSummary.from_list(
            [f for f in te.stack if _is_user_frame(f, engine_dirs)]
        )
        for attr in ("__cause__", "__context__"):
            chained = getattr(te, attr, None)
            if chained is None:
                continue
            if not any(_is_user_frame(f, engine_dirs) for f in chained.stack):
                setattr(te, attr, None)
                if attr == "__context__":
                    te.__suppress_context__ = True
            else:
                stack.append(chained)
        stack.extend(getattr(te, "exceptions", None) or ())
    return "".join(root.format())


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] + (" ..." if len(lines) > 1 else "")


def _describe(exc: BaseException) -> str:
    """``'ZeroDivisionError: division by zero'`` on one line (the type alone if no message;
    ``<unprintable T>`` when the exception's own ``__str__`` raises)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        text = f"<unprintable {type(exc).__name__}>"
    message = _first_line(text)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _shown(value: object) -> str:
    """``repr(value)``, or ``<unprintable T>`` when that raises."""
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the error
        return f"<unprintable {type(value).__name__}>"


def report_failure(exc: BaseException) -> None:
    """The exit-1 report: one line naming the task and the error, then the user's traceback.

    An ``InternalError`` is a bug in Cascade, not in the flow: its traceback
    is printed whole, engine frames included, for the bug report.
    """
    from cascade_graph.errors import InternalError, task_of

    if isinstance(exc, InternalError):
        print(f"error: internal error in cascade (please report it): {_describe(exc)}",
              file=sys.stderr)
        sys.stderr.write("".join(traceback.format_exception(exc)))
        return
    name = task_of(exc)
    head = f"task {name!r} failed" if name else "the run failed"
    print(f"error: {head}: {_describe(exc)}", file=sys.stderr)
    if _has_user_frames(exc):
        sys.stderr.write(user_traceback(exc))
    else:  # the traceback would be the error line again: only the notes it would add
        for note in _extra_notes(exc):
            print(note, file=sys.stderr)
    sys.stderr.flush()


def _has_user_frames(exc: BaseException) -> bool:
    """Whether ``exc`` or an exception chained to it has a frame of the user's code."""
    engine_dirs = _engine_dirs()
    stack = [exc]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if any(_is_user_frame(f, engine_dirs) for f in traceback.extract_tb(e.__traceback__)):
            return True
        stack.extend(c for c in (e.__cause__, e.__context__) if c is not None)
        stack.extend(getattr(e, "exceptions", None) or ())
    return False


def _extra_notes(exc: BaseException) -> list[str]:
    """``exc``'s notes but the one naming the task (the first line names it already)."""
    from cascade_graph.errors import TASK_NOTE_PREFIX, task_of

    notes = [str(n) for n in getattr(exc, "__notes__", None) or ()]
    name = task_of(exc)
    return [n for n in notes if name is None or not n.startswith(TASK_NOTE_PREFIX)]


# --------------------------------------------------------------------------- main


def _exit_status(exc: SystemExit) -> int:
    """The status of ``sys.exit(code)`` as Python gives it: None is 0, an int is itself,
    anything else is printed on stderr and is 1. The run has cleaned up by then."""
    code = exc.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    print(_shown(code) if not isinstance(code, str) else code, file=sys.stderr)
    return EXIT_TASK_FAILED


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    saved_path = list(sys.path)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        if args.version:
            print(f"cascade {version()}")
            return EXIT_OK
        if args.command is None:
            raise UsageError(f"missing command: run, dis or graph (see '{PROG} --help')")
        if args.help:
            return command_help(parser, args)
        if args.flow is None:
            raise UsageError(f"{args.command}: missing FLOW.py, the Python file defining the "
                             f"workflow (see '{PROG} {args.command} --help')")
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TaskFailure as failure:
        report_failure(failure.error)
        return EXIT_TASK_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # a task (or the flow) called sys.exit: as in a script
        return _exit_status(exc)
    except BrokenPipeError:
        # The reader of our stdout went away (`... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    finally:
        sys.path[:] = saved_path
