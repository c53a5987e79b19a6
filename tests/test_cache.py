"""The shared tail-call cache (SPEC section 4): one bounded LRU of compiled templates."""

from __future__ import annotations

import gc
import os

import pytest

from cascade_graph import cache as cache_mod
from cascade_graph import task
from cascade_graph.cache import SHARED, TemplateCache
from cascade_vm import run
from tests.helpers import per_engine, per_switches, run_on


@task
def ident(x):
    return x


@task
def add(a, b):
    return a + b


def _shapes(n):
    """n workflows of pairwise different structure."""
    out = []
    node = ident(0)
    for _ in range(n):
        node = ident(node)
        out.append(node)
    return out


def test_lru_bound_holds():
    """The cache never holds more than maxsize entries."""
    c = TemplateCache(maxsize=3)
    for root in _shapes(10):
        c.entry_for(root)
        assert len(c) <= 3
    assert len(c) == 3


def test_lru_evicts_least_recently_used():
    """A recently used entry survives; the least recently used one goes."""
    c = TemplateCache(maxsize=2)
    a, b, d = ident(ident(1)), ident(ident(ident(1))), add(1, ident(2))
    ea = c.entry_for(a)
    c.entry_for(b)
    assert c.entry_for(a) is ea  # a is now the most recent
    c.entry_for(d)  # evicts b
    assert c.entry_for(a) is ea
    misses = c.misses
    c.entry_for(b)
    assert c.misses == misses + 1


def test_hit_and_miss_counts():
    """A second lookup of the same structure is a hit."""
    c = TemplateCache()
    c.entry_for(add(1, ident(2)))
    c.entry_for(add(5, ident(6)))
    assert (c.hits, c.misses) == (1, 1)


def test_maxsize_must_be_positive():
    """A cache of size zero is refused."""
    with pytest.raises(ValueError):
        TemplateCache(maxsize=0)


def test_shared_cache_is_bounded():
    """The process-wide cache has a finite bound."""
    assert 1 <= SHARED.maxsize < 10**7


@per_engine
def test_entries_reused_across_runs(engine):
    """A run of a structure seen before (its first sight ran on the first tier, the
    second built the template) hits the shared cache, with new values."""

    @task
    def inc(x):
        return x + 1

    misses = SHARED.misses
    run(inc(inc(1)), engine=engine)
    assert SHARED.misses == misses  # the first tier: no template looked up
    run(inc(inc(2)), engine=engine)
    assert SHARED.misses == misses + 1
    hits, misses = SHARED.hits, SHARED.misses
    assert run(inc(inc(10)), engine=engine) == 12
    assert SHARED.misses == misses
    assert SHARED.hits > hits


@per_engine
def test_compiled_form_reused_across_runs(engine):
    """The compiled form (plan or code) of an entry is built once and kept."""

    @task
    def inc(x):
        return x + 1

    run(inc(inc(1)), engine=engine, hot_path=False)
    entry = SHARED.entry_for(inc(inc(2)))
    compiled = entry.code if engine == "vm" else entry.plan
    assert compiled is not None
    run(inc(inc(3)), engine=engine, hot_path=False)
    assert (entry.code if engine == "vm" else entry.plan) is compiled


@per_engine
def test_tail_calls_reuse_entry(engine):
    """A non-flat tail loop looks its template up once per shape, then hits."""

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, ident(acc + 1))

    misses = SHARED.misses
    hits = SHARED.hits
    assert run(step(200, 0), engine=engine) == 200
    assert SHARED.misses - misses <= 3
    assert SHARED.hits - hits >= 190


@per_engine
def test_tail_cache_off_bypasses_shared_cache(engine):
    """tail_cache=False never touches the shared cache."""

    @task
    def step(n, acc):
        return acc if n == 0 else step(n - 1, ident(acc + 1))

    hits, misses, size = SHARED.hits, SHARED.misses, len(SHARED)
    assert run(step(50, 0), engine=engine, tail_cache=False) == 50
    assert (SHARED.hits, SHARED.misses) == (hits, misses)
    assert len(SHARED) <= size


@per_engine
def test_small_cache_still_correct(engine, monkeypatch):
    """With a one-entry cache, alternating shapes still give correct results."""
    small = TemplateCache(maxsize=1)
    monkeypatch.setattr(cache_mod, "SHARED", small)

    @task
    def a(n):
        return ("a", n) if n <= 0 else b(ident(n - 1), n)

    @task
    def b(n, tag):
        return ("b", tag) if n <= 0 else a(n - 1)

    assert run(a(9), engine=engine, hot_path=False) == ("b", 1)
    assert run(a(8), engine=engine, hot_path=False) == ("a", 0)
    assert len(small) == 1


def _loop_workflow():
    @task
    def leaf(x):
        return x * 2

    @task
    def join(a, b):
        return a + b

    @task
    async def aleaf(x):
        return x + 1

    @task
    def loop(n, acc):
        if n == 0:
            return acc
        if n % 3 == 0:
            return loop(n - 1, join(acc, leaf(n)))
        if n % 3 == 1:
            return loop(n - 1, join(aleaf(acc), 0))
        return loop(n - 1, acc + 1)

    return join(loop(30, 0), leaf(loop(5, 1)))


@per_engine
@per_switches
def test_switches_do_not_change_results(engine, switches):
    """tail_cache/hot_path off give the same value as with both on."""
    base, _ = run_on(engine, _loop_workflow())
    value, _ = run_on(engine, _loop_workflow(), switches)
    assert value == base


@per_engine
@per_switches
def test_switches_do_not_change_event_counts(engine, switches):
    """tail_cache/hot_path off give the same event kinds and counts per task."""
    _, base = run_on(engine, _loop_workflow())
    _, rec = run_on(engine, _loop_workflow(), switches)
    assert rec.kinds() == base.kinds()


@per_switches
def test_engines_agree_on_event_counts(switches):
    """Both engines emit the same event kinds and counts per task."""
    _, vm = run_on("vm", _loop_workflow(), switches)
    _, graph = run_on("graph", _loop_workflow(), switches)
    assert vm.kinds() == graph.kinds()


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_hundred_keyword_workflows_stay_under_the_bytes_bound():
    """100 keyword workflows of 10,000 nodes, each built, compiled and cached (about 7 MB
    each, 700 MB unbounded): the shared cache holds at most its 64 MB, and the process
    grows by about that much, not by the 700 MB. The links alternate two tasks, so no
    run of links folds (a run of one task's links is one node: repeat.py)."""
    assert SHARED.maxbytes == 64 * 2**20  # the default (CASCADE_TEMPLATE_CACHE_MB unset)
    SHARED.clear()
    gc.collect()
    before = _rss_bytes()
    for k in range(100):

        @task
        def step(x, scale=1):
            return x + scale

        @task
        def hop(x, scale=1):
            return x + scale

        lr = step(0, scale=2)
        for i in range(9_999):
            lr = (hop if i % 2 else step)(lr, scale=2)
        engine = ("vm", "graph")[k % 2]
        assert run(lr, engine=engine, hot_path=False) == 20_000  # a template at first sight
        assert SHARED.bytes <= SHARED.maxbytes
        del lr, step
    gc.collect()
    grown = _rss_bytes() - before
    assert 1 < len(SHARED) < 100
    assert grown < 2 * SHARED.maxbytes, f"the process grew by {grown / 2**20:.0f} MB"
    SHARED.clear()


@pytest.mark.parametrize("shape", ["fan-in", "chain"])
def test_a_template_counts_about_what_it_holds(shape):
    """An entry's counted bytes are near what building the template and its code keeps
    alive (tracemalloc; counting errs large: the shared link specs, the margin),
    also when one node (a fan-in over 5,000 pipelines) is far bigger than the rest:
    sampled nodes are not all scaled alike (scaled, that node made 97 MB of 4)."""
    import tracemalloc

    from cascade_graph.cache import Entry, attach, record_bytes
    from cascade_graph.template import build_template
    from cascade_vm.compiler import compile_template

    @task
    def fetch(i):
        return i

    @task
    def parse(x):
        return x

    @task
    def total(xs):
        return sum(xs)

    @task
    def step(x, scale=1):
        return x + scale

    if shape == "fan-in":
        lr = total([parse(fetch(i)) for i in range(5_000)])
    else:
        lr = step(0, scale=2)
        for _ in range(9_999):
            lr = step(lr, scale=2)
    build_template(lr)  # the shared tables of link specs grown outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        entry = Entry(build_template(lr))
        attach(entry, "code", compile_template(entry.template))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    counted = record_bytes(entry.template) + record_bytes(entry.code)
    assert 0.5 * held < counted < 3 * held, (counted, held)


def test_the_bytes_bound_has_a_process_setting(monkeypatch):
    """CASCADE_TEMPLATE_CACHE_MB sets the bound of new caches; a bad value says what to give."""
    from cascade_graph.cache import TemplateCache

    monkeypatch.setenv("CASCADE_TEMPLATE_CACHE_MB", "8")
    assert TemplateCache().maxbytes == 8 * 2**20
    monkeypatch.setenv("CASCADE_TEMPLATE_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="CASCADE_TEMPLATE_CACHE_MB='lots'.*megabytes"):
        TemplateCache()


# -- a DAG met again is bound by its guide (cache.lookup, template.bind_by_guide) --------


@task
def _base(i):
    return i


@task
def _join(a, b):
    return a * 10 + b


def _diamond(off: int, shared: bool, more: bool = False):
    """join(join(x, y), join(x, z)) over leaves x, y, z; ``shared``: x one node (a DAG),
    else two equal calls; ``more``: y and z are one node as well."""
    x = _base(off)
    y = _base(off + 1)
    z = y if more else _base(off + 2)
    return _join(_join(x, y), _join(x if shared else _base(off), z))


def _diamond_value(off: int, more: bool = False) -> int:
    z = off + 1 if more else off + 2
    return (off * 10 + off + 1) * 10 + off * 10 + z


@per_engine
def test_a_dag_met_again_is_bound_by_its_guide_and_checked(engine, monkeypatch):
    """From the second run of a DAG shape on, its binding follows the template's child
    indices, with no key walk; a workflow of the same unfolded shape whose sharing
    differs (less, or more) fails the guide's check and takes the key walk: every
    value is still its own."""
    from cascade_graph import template as template_mod

    SHARED.clear()
    for off in (1, 2):  # the first tier, then the template (the key is met again after)
        assert run(_diamond(off, True), engine=engine) == _diamond_value(off)
    run(_diamond(3, True), engine=engine)
    walks = []
    real = cache_mod.key_and_order
    monkeypatch.setattr(cache_mod, "key_and_order",
                        lambda root: walks.append(root) or real(root))
    assert run(_diamond(4, True), engine=engine) == _diamond_value(4)
    assert walks == []  # bound by the guide
    assert run(_diamond(5, False), engine=engine) == _diamond_value(5)  # a tree: no guide
    assert run(_diamond(6, True, more=True), engine=engine) == _diamond_value(6, more=True)
    assert len(walks) == 2  # more sharing than the guide's: the key walk
    for off in range(7, 12):  # the two DAGs in turn: each checked, each right
        more = off % 2 == 0
        assert run(_diamond(off, True, more), engine=engine) == _diamond_value(off, more)
    assert template_mod.bind_by_guide(_diamond(1, True), template_mod.dag_guide(
        template_mod.canonical_nodes(_diamond(1, True, more=True), False))) is None


@pytest.mark.parametrize("written", [True, False], ids=["written-out", "loop"])
def test_both_forms_of_a_guide_bind_the_same_and_refuse_other_sharing(written):
    """A small DAG's guide is written out as code of its own, a large one's is a loop
    (``template.bind_by_guide``): each gives the key walk's inputs for a DAG of the
    same sharing, and None for less sharing or more."""
    from cascade_graph import template as template_mod

    steps, code = template_mod.dag_guide(template_mod.canonical_nodes(_diamond(1, True), False))
    assert code is not None and len(steps) <= template_mod._WRITTEN_GUIDE
    guide = (steps, code if written else None)
    for off in (2, 3):
        dag = _diamond(off, True)
        assert template_mod.bind_by_guide(dag, guide) == template_mod.inputs_from_order(
            template_mod.canonical_nodes(dag, False))
    assert template_mod.bind_by_guide(_diamond(4, False), guide) is None  # less sharing
    assert template_mod.bind_by_guide(_diamond(4, True, more=True), guide) is None  # more


@per_engine
def test_a_small_tree_met_again_is_bound_by_code_written_for_its_key(engine):
    """From a tree key's first hit on, its inputs come from a binder written for the
    key (``template.tree_binder``): the same list the walk gives (``bind_inputs``),
    literals of every node in canonical order, so each run's values are its own."""
    from cascade_graph import template as template_mod

    def tree(off):  # join(join(x, y), join(x', z)): a tree, literals at several depths
        return _join(_join(_base(off), _base(off + 1)), _join(_base(off), _base(off + 2)))

    SHARED.clear()
    for off in range(1, 6):
        assert run(tree(off), engine=engine) == _diamond_value(off)
    root = tree(7)
    entry = SHARED.get(root.shape)
    assert entry is not None and entry.guide[1] is not None
    assert entry.guide[1](root) == template_mod.bind_inputs(root, entry.template) == [
        7, 8, 7, 9]


def _layered(off: int, width: int = 12, layers: int = 8, broken: int | None = None):
    """A layered DAG of ``width * layers + 1`` nodes (node j of a layer joins nodes j
    and j + 1 of the layer before); ``broken``: in the second layer, node ``broken``
    reads a fresh equal call instead of the shared node (less sharing, same shape)."""
    layer = [_base(off + j) for j in range(width)]
    for k in range(1, layers):
        below = layer
        layer = []
        for j in range(width):
            right = below[(j + 1) % width]
            if k == 1 and j == broken:
                right = _base(off + (j + 1) % width)
            layer.append(_join(below[j], right))
    return _sum(layer)


@task
def _sum(values):
    return sum(values)


def _layered_value(off: int, width: int = 12, layers: int = 8) -> int:
    layer = [off + j for j in range(width)]
    for _ in range(1, layers):
        layer = [layer[j] * 10 + layer[(j + 1) % width] for j in range(width)]
    return sum(layer)


@per_engine
def test_a_large_dag_met_again_is_bound_by_its_guide(engine, monkeypatch):
    """A DAG above the written-out size is bound by its guide's loop from its key's
    first hit on, with no key walk; a DAG of the same shape with less sharing takes
    the key walk; every run's value is its own."""
    from cascade_graph import template as template_mod

    SHARED.clear()
    assert len(template_mod.canonical_nodes(_layered(0), False)) > template_mod._WRITTEN_GUIDE
    for off in (1, 2, 3):  # first tier, template, first hit (the guide is made)
        assert run(_layered(off), engine=engine) == _layered_value(off)
    walks = []
    real = cache_mod.key_and_order
    monkeypatch.setattr(cache_mod, "key_and_order",
                        lambda root: walks.append(root) or real(root))
    for off in (4, 5):
        assert run(_layered(off), engine=engine) == _layered_value(off)
    assert walks == []  # bound by the guide's loop
    assert run(_layered(6, broken=3), engine=engine) == _layered_value(6)
    assert len(walks) == 1  # less sharing: the key walk
