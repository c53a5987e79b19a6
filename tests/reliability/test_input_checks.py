"""Input checks and the language's corners (issue 16, classes 10 to 13 and 15).

- Policy arguments are checked where they are given, each message naming the
  method, the argument and what it accepts (class 10); a ``Param`` whose
  ``type`` raises anything is a ``ParameterError`` naming the parameter and the
  value.
- ``inject()``: resources are set up in the order of the parameters they fill
  (torn down in reverse); a marker inside a container is passed as it is
  (class 11).
- A ``Param`` whose ``type`` returns a lazy call is a ``ParameterError`` on both
  engines (class 12).
- A keyword argument named ``self`` works in a call, in ``.map`` and under a
  policy (class 13).
- The shape table keeps no ``Param`` (nor its default) alive (class 15).
"""

# ruff: noqa: B008 - inject(...) as a parameter default is how a task asks for a resource

from __future__ import annotations

import gc
import math
import weakref

import pytest

from cascade_graph import Env, Param, ParameterError, inject, task
from cascade_graph.cache import SHARED
from cascade_graph.lazy import _SHAPES, Inject
from cascade_vm import run

from ._support import Events, ResourceLog


@task(name="ident")
def ident(x):
    return x


@task(name="size")
def size(x):
    return len(x)


# ---------------------------------------------------------------------------
# 10. Policy arguments

NAN, INF = float("nan"), float("inf")

BAD_RETRY = [
    # (keyword arguments, exception type, words the message must hold)
    ({"retry_on": "ConnectionError"}, TypeError,
     ["retry_on", "exception class", "'ConnectionError'"]),
    ({"retry_on": (ValueError, "KeyError")}, TypeError, ["retry_on", "'KeyError'"]),
    ({"retry_on": [ValueError]}, TypeError, ["retry_on", "tuple"]),
    ({"retry_on": ValueError("x")}, TypeError, ["retry_on", "exception class"]),
    ({"max_attempts": 0}, ValueError, ["max_attempts", ">= 1"]),
    ({"max_attempts": 2.5}, TypeError, ["max_attempts", "int"]),
    ({"max_attempts": True}, TypeError, ["max_attempts", "bool"]),
    ({"max_attempts": "3"}, TypeError, ["max_attempts", "str"]),
    ({"delay": -1}, ValueError, ["delay", ">= 0"]),
    ({"delay": NAN}, ValueError, ["delay", "finite"]),
    ({"delay": INF}, ValueError, ["delay", "finite"]),
    ({"delay": "1"}, TypeError, ["delay", "number"]),
    ({"backoff": NAN}, ValueError, ["backoff", "finite"]),
    ({"backoff": -2}, ValueError, ["backoff", ">= 0"]),
    ({"max_delay": INF}, ValueError, ["max_delay", "finite"]),
    ({"max_delay": "10"}, TypeError, ["max_delay", "number"]),
    ({"jitter": -0.5}, ValueError, ["jitter", ">= 0"]),
    ({"jitter": None}, TypeError, ["jitter", "number"]),
]


@pytest.mark.parametrize("kwargs, exc_type, words", BAD_RETRY,
                         ids=[repr(k) for k, _, _ in BAD_RETRY])
@pytest.mark.parametrize("on", ["call", "map"])
def test_bad_retry_arguments_fail_at_the_call(kwargs, exc_type, words, on):
    target = ident(1) if on == "call" else ident.map([1, 2])
    with pytest.raises(exc_type) as raised:
        target.with_retry(**kwargs)
    message = str(raised.value)
    assert message.startswith("with_retry: "), message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("seconds, exc_type", [
    (NAN, ValueError), (INF, ValueError), (-INF, ValueError), (0, ValueError), (-1, ValueError),
    ("1", TypeError), (True, TypeError), (None, TypeError), ([1], TypeError),
])
def test_bad_timeout_fails_at_the_call(seconds, exc_type):
    with pytest.raises(exc_type, match=r"^with_timeout: seconds must be .*> 0"):
        ident(1).with_timeout(seconds)


def test_good_policy_arguments_still_work(engine):
    """Ints, floats, a class, a tuple of classes, max_delay None: accepted and honoured."""
    calls = []

    @task(name="flaky")
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    lazy = flaky().with_retry(3, delay=0, backoff=2, max_delay=None, jitter=0,
                              retry_on=ConnectionError).with_timeout(5)
    assert run(lazy, engine=engine) == "up"
    calls.clear()
    lazy = flaky().with_retry(max_attempts=3, delay=0.0, retry_on=(KeyError, OSError))
    assert run(lazy, engine=engine) == "up"


def test_wrong_retry_on_no_longer_loses_the_task_error(engine):
    """Before, ``retry_on="ConnectionError"`` was accepted and the task's own error was
    lost in a TypeError from ``isinstance``; now the mistake is reported at the call,
    and with a correct ``retry_on`` the task's error leaves the run as itself."""
    @task(name="fails")
    def fails():
        raise ConnectionError("the task's own error")

    with pytest.raises(TypeError, match="retry_on"):
        fails().with_retry(2, retry_on="ConnectionError")
    with pytest.raises(ConnectionError, match="the task's own error"):
        run(fails().with_retry(2, retry_on=ConnectionError), engine=engine)


def test_a_long_retry_with_a_large_backoff_has_a_capped_pause():
    from cascade_graph.lazy import Retry

    retry = Retry(5000, 1.0, 10.0, 30.0, 0.0, (Exception,))
    assert retry.pause(4000) == 30.0  # 10.0 ** 3999 overflows a float: capped, not raised
    assert Retry(5000, 0.0, 10.0, None, 0.0, (Exception,)).pause(4000) == 0.0


class Unconvertible(Exception):
    pass


def _raises_lookup(text):
    raise KeyError(text)


def _raises_custom(text):
    raise Unconvertible(f"cannot read {text}")


@pytest.mark.parametrize("converter", [_raises_lookup, _raises_custom, lambda t: 1 / 0],
                         ids=["KeyError", "custom", "ZeroDivisionError"])
def test_param_type_raising_anything_is_a_parameter_error(engine, converter):
    p = Param("rows", type=converter)
    with pytest.raises(ParameterError) as raised:
        run(ident(p), engine=engine, params={"rows": "abc"})
    message = str(raised.value)
    assert "parameter 'rows'" in message and "'abc'" in message, message
    assert isinstance(raised.value.__cause__, Exception)


def test_param_type_must_be_callable():
    with pytest.raises(TypeError, match="Param 'rows': type must be callable"):
        Param("rows", type="int")


# ---------------------------------------------------------------------------
# 11. inject()


def _ordered(res: ResourceLog, scope: str):
    return {short: res.gen(short, scope=scope) for short in ("a", "b", "c", "d")}


@pytest.mark.parametrize("scope", ["run", "task"])
def test_injection_set_up_order_follows_the_parameters(engine, scope):
    """The first parameter's resource is set up first and torn down last, whether it
    comes as a positional argument, a keyword or a parameter default."""
    res = ResourceLog("inject-order")
    r = _ordered(res, scope)

    @task(name="three")
    def three(x, y, z=inject(r["c"])):
        return x, y, z

    @task(name="spread")
    def spread(*args, **kwargs):
        return args, kwargs

    @task(name="mixed")
    def mixed(first, second=inject(r["b"]), *, third=None, fourth=inject(r["d"])):
        return first, second, third, fourth

    cases = [
        (three(inject(r["a"]), inject(r["b"])), ["a", "b", "c"]),
        (three(y=inject(r["b"]), x=inject(r["a"])), ["a", "b", "c"]),
        (three(inject(r["d"]), inject(r["a"])), ["d", "a", "c"]),
        (spread(inject(r["b"]), inject(r["a"]), k=inject(r["d"]), j=inject(r["c"])),
         ["b", "a", "d", "c"]),
        (mixed(inject(r["a"]), third=inject(r["c"])), ["a", "b", "c", "d"]),
        (mixed(inject(r["c"]), inject(r["a"])), ["c", "a", "d"]),
    ]
    for target, expected in cases:
        res.log.clear()
        run(target, engine=engine)
        names = [r[short] for short in expected]
        assert res.ups() == names, (expected, res.log)
        assert res.downs() == names[::-1], (expected, res.log)


def test_injection_order_is_the_same_under_a_policy(engine):
    res = ResourceLog("inject-order-policy")
    r = _ordered(res, "task")

    @task(name="two")
    def two(x, y):
        return x, y

    run(two(inject(r["b"]), inject(r["a"])).with_retry(2), engine=engine)
    assert res.ups() == [r["b"], r["a"]]
    assert res.downs() == [r["a"], r["b"]]


def test_markers_inside_containers_pass_through_untouched(engine):
    """``f([inject("db")])``: the task receives the very marker, nothing is set up, and
    the name need not even be registered."""
    res = ResourceLog("inject-nested")
    db = res.gen("db")
    marker = inject(db)
    unknown = inject("inject-nested.not-registered")
    box = [marker, {"k": unknown}]
    events = Events()

    @task(name="takes")
    def takes(items, top=None):
        return items, top

    out_items, out_top = run(takes(box, top=(1, marker)), engine=engine, on_event=events)
    assert out_items is box and out_items[0] is marker and out_items[1]["k"] is unknown
    assert out_top == (1, marker) and out_top[1] is marker
    assert res.log == []

    # beside a lazy in the same container: the container is rebuilt, the marker kept
    out_items, _ = run(takes([ident(1), marker]), engine=engine)
    assert out_items[0] == 1 and out_items[1] is marker
    assert type(out_items[1]) is Inject
    assert res.log == []

    # a top-level marker is still injected
    value, _ = run(takes(inject(db)), engine=engine)
    assert value == "value of db"
    assert res.ups() == [db]


# ---------------------------------------------------------------------------
# 12. A Param whose type returns a lazy call


@task(name="parse")
def parse(text):
    return int(text)


def _lazy_converter(text):
    return parse(text)


@pytest.mark.parametrize("where", ["target", "argument", "two-arguments", "list", "keyword",
                                   "condition", "default", "params-value", "env-default"])
def test_a_lazy_parameter_value_is_a_parameter_error(engine, where):
    p = Param("n", type=_lazy_converter)
    params = {"n": "3"}
    target = {
        "target": lambda: p,
        "argument": lambda: ident(p),
        "two-arguments": lambda: size([p, 1]),
        "list": lambda: ident([p, 1]),
        "keyword": lambda: ident(x=p),
        "condition": lambda: ident(1).run_if(p),
        "default": lambda: ident(Param("n", default="3", type=_lazy_converter)),
        "params-value": lambda: ident(Param("n", type=int)),
        "env-default": lambda: ident(Env("CASCADE_TEST_SURELY_UNSET_VARIABLE",
                                         default=parse("3"))),
    }[where]()
    if where == "params-value":
        params = {"n": parse("3")}
    with pytest.raises(ParameterError, match="must return a value, not a lazy call"):
        run(target, engine=engine, params=params)


# ---------------------------------------------------------------------------
# 13. A keyword argument named self


@task(name="kw")
def kw(**kwargs):
    return kwargs


@task(name="takes_self")
def takes_self(self, other=0):
    return self + other


def test_keyword_named_self(engine, hot_path):
    assert run(kw(self=1), engine=engine, hot_path=hot_path) == {"self": 1}
    assert run(kw(self=ident(2), other=3), engine=engine, hot_path=hot_path) == {
        "self": 2, "other": 3}
    assert run(takes_self(self=4, other=1), engine=engine, hot_path=hot_path) == 5
    assert run(kw(self=1).with_retry(2), engine=engine) == {"self": 1}


def test_keyword_named_self_in_map(engine):
    assert run(kw.map(self=[1, 2]), engine=engine) == [{"self": 1}, {"self": 2}]
    assert run(takes_self.map(self=[1, 2], other=[10, 20]), engine=engine) == [11, 22]
    assert run(kw.map(self=[1, 2]).with_retry(2), engine=engine) == [{"self": 1}, {"self": 2}]


# ---------------------------------------------------------------------------
# 15. The shape table keeps no Param alive


def _released(make_target, engine, **options) -> bool:
    p = Param("blob", default="x" * 1_000_000)
    ref = weakref.ref(p)
    assert run(make_target(p), engine=engine, **options) == 1_000_000
    del p
    gc.collect()
    return ref() is None


def test_a_param_is_released_after_its_run(engine):
    """Nothing but the (bounded, optional) template cache holds a Param after its run:
    with the cache off, it and its default are freed at once."""
    assert _released(lambda p: size(p), engine, tail_cache=False)
    assert _released(lambda p: size(ident(p)), engine, tail_cache=False)


def test_a_param_is_released_once_its_template_leaves_the_cache(engine):
    before = len(_SHAPES)
    refs = []
    for _ in range(20):
        p = Param("blob", default="x" * 1_000_000)
        refs.append(weakref.ref(p))
        assert run(size(p), engine=engine) == 1_000_000
        del p
    assert len(_SHAPES) - before < 20  # the value nodes took no entries
    SHARED.clear()
    gc.collect()
    assert [r for r in refs if r() is not None] == []


def test_a_param_repr_stays_short_whatever_its_default():
    """Listings and messages show a Param: a huge default is not copied into them."""
    p = Param("blob", default="x" * 1_000_000)
    assert len(repr(p)) < 200
    assert repr(Param("rows", default=3)) == "Param('rows', default=3)"
    assert repr(Param("rows")) == "Param('rows')"


def test_value_nodes_still_run_with_fresh_shapes(engine):
    """Two Params of one name are two structures; each resolves its own default."""
    a, b = Param("n", default="1", type=int), Param("n", default="2", type=int)
    assert a.shape != b.shape
    assert run([ident(a), ident(b)], engine=engine) == [1, 2]
    assert run([ident(a), ident(a)], engine=engine, params={"n": "5"}) == [5, 5]
    assert not math.isnan(run(ident(Param("f", default="0.5", type=float)), engine=engine))
