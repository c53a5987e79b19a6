"""Templates (SPEC section 4): structure with literals pulled out into input slots."""

from __future__ import annotations

import pytest

from cascade_graph import Param, task
from cascade_graph.template import bind_inputs, build_template, canonical_nodes, template_key
from cascade_vm import run
from tests.helpers import Calls, per_engine


@task
def add(a, b):
    return a + b


@task
def ident(x):
    return x


@task
def other_add(a, b):
    return a + b


def test_same_structure_same_key():
    """Two workflows of the same structure with different literals share a key."""
    assert template_key(add(1, add(2, 3))) == template_key(add(10, add(20, 30)))


def test_literals_do_not_change_key():
    """Literal values of any type are data: the key stays the same."""
    assert template_key(add("x", [1, 2])) == template_key(add(3.5, {"k": None}))


def test_shared_vs_distinct_children_keys_differ():
    """add(x, x) with one x and add(x1, x2) with equal distinct calls are different templates."""
    x = ident(1)
    shared = add(x, x)
    distinct = add(ident(1), ident(1))
    assert template_key(shared) != template_key(distinct)


def test_shared_vs_distinct_node_counts():
    """add(x, x) has two nodes, add(x1, x2) three."""
    x = ident(1)
    assert len(build_template(add(x, x)).nodes) == 2
    assert len(build_template(add(ident(1), ident(1))).nodes) == 3


@per_engine
def test_shared_vs_distinct_run_call_counts(engine):
    """Shared and distinct templates run different numbers of calls, in either order."""
    calls = Calls()

    @task
    def src(v):
        calls.hit("src")
        return v

    x = src(1)
    assert run(add(x, x), engine=engine) == 2
    assert calls["src"] == 1
    assert run(add(src(1), src(1)), engine=engine) == 2
    assert calls["src"] == 3
    y = src(2)
    assert run(add(y, y), engine=engine) == 4
    assert calls["src"] == 4


def test_sharing_deep_in_tree_changes_key():
    """Sharing one level down also separates templates."""
    x = ident(1)
    a = add(0, add(x, x))
    b = add(0, add(ident(1), ident(1)))
    assert template_key(a) != template_key(b)


def test_sharing_across_branches_changes_key():
    """A node shared by two sibling subtrees differs from two copies of it."""
    x = ident(1)
    a = add(add(x, 1), add(x, 2))
    b = add(add(ident(1), 1), add(ident(1), 2))
    assert template_key(a) != template_key(b)
    assert len(build_template(a).nodes) == 4
    assert len(build_template(b).nodes) == 5


def test_different_tasks_different_keys():
    """Tasks with identical code are different tasks in templates."""
    assert template_key(add(1, 2)) != template_key(other_add(1, 2))


def test_same_name_tasks_different_keys():
    """Two tasks with the same name have different templates."""

    def make():
        @task(name="n")
        def f(x):
            return x

        return f

    assert template_key(make()(1)) != template_key(make()(1))


def test_policy_is_structure():
    """A policy changes the key; equal policies give equal keys."""
    plain = template_key(ident(1))
    retried = template_key(ident(1).with_retry(3))
    assert plain != retried
    assert retried == template_key(ident(2).with_retry(3))
    assert retried != template_key(ident(2).with_retry(4))


def test_keyword_values_are_not_structure():
    """Keyword argument values are data: equal names give equal keys."""
    assert template_key(add(a=1, b=2)) == template_key(add(a=5, b=6))


def test_lazy_vs_literal_argument_differ():
    """A lazy argument and a literal argument are different structure."""
    assert template_key(add(ident(1), 2)) != template_key(add(1, 2))


def test_container_with_lazy_is_structure():
    """Containers holding lazies are structure (their type and length)."""
    k_list = template_key(ident([ident(1), 2]))
    assert k_list == template_key(ident([ident(5), 6]))
    assert k_list != template_key(ident((ident(1), 2)))
    assert k_list != template_key(ident([ident(1), 2, 3]))


def test_dict_keys_with_lazy_values_are_structure():
    """The keys of a dict holding lazies are structure."""
    a = template_key(ident({"a": ident(1)}))
    assert a == template_key(ident({"a": ident(2)}))
    assert a != template_key(ident({"b": ident(1)}))


def test_big_literal_list_is_one_input_slot():
    """A literal container of any size is a single input slot."""
    big = list(range(100_000))
    t = build_template(ident(big))
    assert t.n_inputs == 1
    assert bind_inputs(ident(big), t)[0] is big


def test_big_literal_beside_lazy_is_one_slot():
    """A big literal next to a lazy argument is still one slot."""
    big = list(range(100_000))
    root = add(ident(1), big)
    t = build_template(root)
    assert t.n_inputs == 2
    assert any(x is big for x in bind_inputs(root, t))


def test_literals_inside_lazy_container_are_slots():
    """Literals beside lazies inside a container are one slot each."""
    root = ident([1, ident(2), [3, 4], "x"])
    t = build_template(root)
    assert t.n_inputs == 4  # root: 1, [3, 4] (one literal list), "x"; inner call: 2
    assert sorted(map(repr, bind_inputs(root, t))) == sorted(map(repr, [1, [3, 4], "x", 2]))


def test_bind_inputs_follow_template_order():
    """Binding two same-key workflows gives their literals in the same slot order."""
    a = add(add(1, 2), add(3, 4))
    b = add(add(10, 20), add(30, 40))
    t = build_template(a)
    assert [x * 10 for x in bind_inputs(a, t)] == list(bind_inputs(b, t))


def test_n_inputs_counts_literals():
    """n_inputs equals the number of literal arguments in the whole workflow."""
    t = build_template(add(add(1, 2), add(ident(3), 4)))
    assert t.n_inputs == 4


def test_root_is_node_zero():
    """The root call is the template's first node."""
    root = add(ident(1), 2)
    t = build_template(root)
    assert t.nodes[0].task is add


def test_flat_single_call():
    """A single call with only literal arguments is flat (the hot path)."""
    assert build_template(add(1, [2])).flat
    assert not build_template(add(1, ident(2))).flat


def test_flat_excludes_policies():
    """A single call with a policy is not flat."""
    assert not build_template(ident(1).with_retry()).flat
    assert not build_template(ident(1).run_if(True)).flat


def test_param_node_in_template():
    """A Param is a value node of the template."""
    p = Param("x", default=1)
    t = build_template(ident(p))
    assert len(t.value_nodes) == 1 and t.nodes[t.value_nodes[0]].task is p


def test_arity_checked_when_built():
    """Building a template checks every call's arity and names the task."""
    with pytest.raises(TypeError, match="ident"):
        build_template(add(ident(1, 2), 3))


def test_template_key_without_walk_is_stable_for_trees():
    """Building the same tree twice gives equal keys (no identity leaks into keys)."""
    keys = {template_key(add(ident(i), add(i, ident(i)))) for i in range(5)}
    assert len(keys) == 1


def test_chains_of_links_keep_their_keys_when_rebuilt_and_differ_by_structure():
    """Chains of one task's links, of alternating tasks, of runs of each, positional or
    keyword, rebuilt from new values: the same key each time; any change of task,
    order, keyword or length gives another key."""

    def build(pattern, value, keyword):
        node = value
        for name in pattern:
            task_obj = inc if name == "i" else dec
            node = task_obj(node, by=2) if keyword else task_obj(node)
        return node

    patterns = ["i" * 50, "ij" * 25, "iij" * 17, "jiii" * 12, "ijjj" * 12, "i" * 49 + "j",
                "j" + "i" * 49, "i" * 51, "j" * 50]
    keys = []
    for pattern in patterns:
        for keyword in (False, True):
            made = {template_key(build(pattern, v, keyword)) for v in (1, 2, 3)}
            assert len(made) == 1, (pattern, keyword)
            keys.append(made.pop())
    assert len(set(keys)) == len(keys)


@task
def total3(a, b, c):
    return a + b + c


@task
def inc(x, by=1):
    return x + by


@task
def dec(x, by=1):
    return x - by


@per_engine
def test_run_after_structure_change_uses_new_structure(engine):
    """Running two workflows of different shape one after the other gives each its value."""
    x = ident(2)
    assert run(add(x, x), engine=engine) == 4
    assert run(add(ident(2), ident(3)), engine=engine) == 5
    assert run(add(add(1, 2), ident(3)), engine=engine) == 6


@pytest.mark.parametrize("engine", ["vm", "graph"])
def test_two_argument_calls_every_mix(engine):
    """Two-argument calls take their own path when building: every mix of literal,
    lazy, container and the same lazy twice keeps equal keys for equal structures
    and gives the right value."""
    x = ident(1)
    y = ident(2)
    cases = [
        (lambda a, b: add(a, 10), 11),
        (lambda a, b: add(10, a), 11),
        (lambda a, b: add(a, b), 3),
        (lambda a, b: add(a, a), 2),
        (lambda a, b: add([a], [5]), [1, 5]),
        (lambda a, b: add(4, [a]), None),
        (lambda a, b: add([a], 4), None),
    ]
    for make, expected in cases:
        first, second = make(ident(1), ident(2)), make(ident(7), ident(8))
        assert template_key(first) == template_key(second)
        if expected is not None:
            assert run(make(x, y), engine=engine) == expected
    assert template_key(add(x, 10)) != template_key(add(10, x))
    # three arguments, two of them lazies: the same lazy twice is another structure
    assert template_key(total3(1, x, x)) != template_key(total3(1, x, y))
    assert template_key(total3(x, 1, x)) == template_key(total3(y, 2, y))
    assert template_key(total3(x, y, x)) != template_key(total3(x, y, ident(3)))
    assert run(total3(1, x, x), engine=engine) == 3
    assert run(total3(x, y, x), engine=engine) == 4
    assert template_key(add(ident(1), ident(2))) != template_key(add(x, x))


def test_one_level_layouts_are_written_out_once():
    """``written_arguments``: a call of literals, lazies and one-level lists, tuples,
    sets and str-keyed dicts gets its arguments from one function per layout (values
    in slot order) and one per spec (a lazy's literals and children); nested, non-str
    keys and more than ``_WRITTEN_SLOTS`` values have no layout."""
    from cascade_graph.template import _WRITTEN_SLOTS, layout_of, written_arguments

    specs = ((("L", 0), None), (("C", tuple, (None, ("L", 1))),),
             ("D", ("k",), (("L", 0),)), None)
    spec = ((specs[0][0], specs[1][0]), ("d", "e"), (specs[2], specs[3]), None)
    layout = layout_of(spec[0] + spec[2])
    assert layout == (None, ("C", tuple, 2), ("D", ("k",), 1), None)
    assert written_arguments(layout, None)("a", "b", "c", "d", "e") == (
        "a", ("b", "c"), {"k": "d"}, "e")
    assert written_arguments(layout, None) is written_arguments(layout, None)
    lits, children = ("x", "y"), ["c0", "c1"]
    assert written_arguments(layout, spec)(lits, children) == (
        ("c0", ("x", "c1")), {"d": {"k": "c0"}, "e": "y"})
    assert written_arguments((("C", set, 2),), (((("C", set, (None, None)),), (), (), None)))(
        (1, 2), []) == (({1, 2},), None)
    assert layout_of((("C", list, (("C", list, (None,)),)),)) is None  # nested
    assert layout_of((("D", (1,), (None,)),)) is None  # a key that is not a str
    assert layout_of((("C", list, (None,) * (_WRITTEN_SLOTS + 1)),)) is None
    assert layout_of((("I", "db"),)) is None  # an injection


@task
def _gather(*args, **kwargs):
    return args, kwargs


@pytest.mark.parametrize("make", [
    lambda x, y: _gather([x, 1]),
    lambda x, y: _gather((1, x), {"a": y, "b": 2}, k=[y, x]),
    lambda x, y: _gather(x, [x, y, 3]),  # a lazy passed twice
    lambda x, y: _gather(k={"x": x}),
], ids=["list", "tuple, dict and keyword list", "twice", "keyword dict"])
def test_container_calls_take_the_builders_fast_path(make):
    """A call of literals, lazies and one-level containers (an interned spec) is added
    by ``_Builder._add_containers``: the node ``add_general`` would make, field by
    field; the workflow's value is the same on both engines."""
    from cascade_graph.template import ContainerNode, _Builder

    x, y = _gather(1), _gather(2)
    root = make(x, y)
    template = build_template(root)
    assert type(template.nodes[0]) is ContainerNode
    general = _Builder(canonical_nodes(root, root.tree), root.tree)
    general.index = {n: i for i, n in enumerate(general.order)}
    general.add_general(0, root)
    fields = ("kind", "task", "args", "kwnames", "kwargs", "deps", "data_deps", "conds",
              "after", "policy", "first_input", "n_inputs", "injects", "simple", "routes",
              "multi_routes")
    for field in fields:
        assert getattr(template.nodes[0], field) == getattr(general.nodes[0], field), field
    for engine in ("vm", "graph"):
        assert run(make(_gather(1), _gather(2)), engine=engine) == run(
            make(_gather(1), _gather(2)), engine=engine, tail_cache=False)
