"""The tail-call cache: templates and their compiled forms, shared by both engines.

Bounded three ways, least recently used entries going first: by entries
(``maxsize``), by the template nodes they hold in all (``maxnodes``) and by
their bytes (``maxbytes``, default 64 MB; the environment variable
``CASCADE_TEMPLATE_CACHE_MB`` sets it for the process, and
``SHARED.maxbytes`` may be changed at any time). A node costs from about
300 bytes (a chain link) to a few kilobytes (keywords, containers,
policies) once compiled for both engines, so only the bytes bound holds
memory to a known size. An entry's bytes are measured, not guessed
(``record_bytes``): its template when it is stored, each compiled form when
an engine attaches it (``attach``).

One bounded LRU maps a template key (see template.py) to an ``Entry``: the
``Template`` and, filled on first use by each engine, its compiled forms (the
graph executor's ``plan``, the VM's ``code``). A new run, a tail call and a
map item with the same structure all land on the same entry and only bind new
input values. ``tail_cache=False`` bypasses the cache: every lookup builds a
fresh entry (same results, slower).

Building a template and compiling it (``without_gc``) run with Python's
cyclic garbage collector paused. They allocate thousands of small acyclic
records that all stay alive, and each burst of allocations would otherwise
trigger collections that traverse the user's whole graph of ``LazyResult``s
again and again: on a cold 10,000-node chain that made the graph plan's
compile about 4x slower. Nothing collectable is made there, and the
collector is restored (only if it was on) before any task runs.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections import OrderedDict

from .calls import DISTRIBUTED
from .lazy import _LAZY_TYPES
from .template import (
    Node,
    Template,
    bind_by_guide,
    bind_inputs,
    build_template,
    canonical_nodes,
    dag_guide,
    inputs_from_order,
    key_and_order,
    tree_binder,
)

DEFAULT_MAXSIZE = 4096  # entries
DEFAULT_MAXNODES = 1 << 20  # template nodes over all entries
DEFAULT_MAXBYTES = 64 * 2**20  # bytes of templates and compiled forms over all entries
_BYTES_SETTING = "CASCADE_TEMPLATE_CACHE_MB"


def default_maxbytes() -> int:
    """The bytes bound of the shared caches: ``CASCADE_TEMPLATE_CACHE_MB`` (megabytes,
    a positive number) when set, else 64 MB."""
    text = os.environ.get(_BYTES_SETTING)
    if text is None:
        return DEFAULT_MAXBYTES
    try:
        mb = float(text)
    except ValueError:
        mb = 0.0
    if not mb > 0:
        raise ValueError(f"{_BYTES_SETTING}={text!r}: give the template cache's size in "
                         f"megabytes, a positive number (e.g. {_BYTES_SETTING}=64)")
    return int(mb * 2**20)


#: types whose records belong to a template or a compiled form: followed when measuring
_OWNED = (tuple, list, dict, frozenset)
_SKIP = (type, str, int, float, bool, type(None))


#: what tracemalloc sees an entry cost, over what ``record_bytes`` counts in it: the
#: allocator's rounding and objects no record shows (an itemgetter's index tuple).
#: Measured on 10,000-node keyword chains and layered DAGs, both engines: 1.17-1.37.
OVERHEAD = 1.4


_SAMPLED = 256  # a longer tuple or list is measured on a sample of its items


def _sampled(items, seen: set, exclude: tuple) -> float:
    """The bytes of ``items``' contents, from ``_SAMPLED // 2`` of them evenly spaced
    (a template's nodes, a code's ops: like records, so a sample tells their size
    within the ``OVERHEAD`` margin, at a fraction of the walk's cost).

    A sampled item over four times the sample's median (a fan-in's node, holding
    its thousands of child references) is counted once, as itself: scaled up
    with the others, one such node made a 7 MB template of 5,000 pipelines
    count as 45 MB."""
    k = _SAMPLED // 2
    step = len(items) / k
    within = set(seen)  # (an object shared by sampled items is counted once)
    sizes = [record_bytes(items[int(i * step)], exclude=exclude, seen=within, scale=False)
             for i in range(k)]
    median = sorted(sizes)[k // 2]
    large = [size for size in sizes if size > 4 * median]
    like = sum(sizes) - sum(large)
    return sum(large) + like * (len(items) - len(large)) / (k - len(large))


def record_bytes(*roots, exclude=(), seen=None, scale=True) -> int:
    """Bytes of ``roots`` and what they hold: containers, and the slotted records of
    this package (template nodes, plan ops, code), followed once each; tasks,
    functions, classes and other objects they name are not counted (they are the
    user's, or shared by every entry), nor objects of the types ``exclude``.
    Scaled by ``OVERHEAD``, so it errs on the large side."""
    exclude = _SKIP + tuple(exclude)
    if seen is None:
        seen = set()
    total = 0
    stack = list(roots)
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, exclude):
            continue
        seen.add(id(o))
        t = type(o)
        if t in _OWNED:
            total += sys.getsizeof(o)
            if len(o) > _SAMPLED and t is not dict:  # a long tuple of like records
                total += _sampled(o, seen, exclude)
                continue
            stack.extend(o.items() if t is dict else o)
        elif (t.__module__.startswith(("cascade_graph.", "cascade_vm.")) and hasattr(
                o, "__slots__") and t not in _LAZY_TYPES):
            total += sys.getsizeof(o)
            for cls in t.__mro__:
                for name in getattr(cls, "__slots__", ()):
                    v = getattr(o, name, None)
                    if v is not None:
                        stack.append(v)
    return int(total * OVERHEAD) if scale else total


def without_gc(build, arg):
    """``build(arg)`` with the cyclic garbage collector paused (see module docstring)."""
    if not gc.isenabled():
        return build(arg)
    gc.disable()
    try:
        return build(arg)
    finally:
        gc.enable()


def _build(job):
    return build_template(*job)


class Entry:
    """A template and the engines' compiled forms of it (filled lazily)."""

    __slots__ = ("template", "plan", "code", "tier", "bytes", "owner", "guide")

    def __init__(self, template: Template):
        self.template = template
        self.plan = None  # graph executor's Plan
        self.code = None  # VM's Code
        self.tier = [0, None]  # the VM's second tier: [entries, JIT ops or ()] (jit.py)
        self.bytes = 0  # measured: the template and the compiled forms attached so far
        self.owner = None  # the TemplateCache holding it, if any
        # how the next workflow of this key is bound, made when its key comes back: a
        # DAG's guide (template.dag_guide), a tree's (steps, written binder or None)
        self.guide = None


class TemplateCache:
    """A bounded LRU of ``Entry`` by template key.

    Safe to share between threads (``run()`` called from several threads):
    ``get``, ``put`` and ``clear`` hold one lock for their few dict
    operations. Building a template on a miss happens outside the lock; when
    two threads build the same one, the first ``put`` wins and both use its
    entry. A lookup takes the lock once per template, never per iteration of
    a hot loop.
    """

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE, maxnodes: int = DEFAULT_MAXNODES,
                 maxbytes: int | None = None):
        maxbytes = default_maxbytes() if maxbytes is None else maxbytes
        if maxsize < 1 or maxnodes < 1 or maxbytes < 1:
            raise ValueError(f"TemplateCache bounds must be >= 1, got {maxsize}, {maxnodes}, "
                             f"{maxbytes}")
        self.maxsize = maxsize  # at most this many entries
        self.maxnodes = maxnodes  # and at most this many template nodes in all
        self.maxbytes = maxbytes  # and at most this many bytes in all (record_bytes)
        self.nodes = 0  # template nodes held now
        self.bytes = 0  # bytes held now
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        # a DAG's root shape (its structure unfolded as a tree) -> the entry of the
        # last DAG of that shape met twice, with its binding guide (``lookup``)
        self.dags: dict = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: int) -> bool:
        """Is an entry stored under ``key``? (A look only: no hit, no miss, no reorder.)"""
        return key in self._entries

    def clear(self) -> None:
        with self._lock:
            for entry in self._entries.values():
                entry.owner = None
            self._entries.clear()
            self.dags.clear()
            self.nodes = 0
            self.bytes = 0

    def entry_for(self, root, key: int | None = None, order=None) -> Entry:
        """The entry for the workflow under ``root``, built and stored on a miss.

        ``key`` and ``order`` (from ``key_and_order``) save the walk when the caller has them.
        """
        if key is None:
            key, order = key_and_order(root)
        entry = self.get(key)
        if entry is None:
            entry = self.put(key, _new_entry(root, key, order))
        return entry

    def get(self, key: int) -> Entry | None:
        """The entry stored under ``key`` (now the most recently used), or None: a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return entry

    def put(self, key: int, entry: Entry) -> Entry:
        """Store ``entry`` and return the stored entry (an earlier one for ``key`` wins).

        Least recently used entries beyond the bounds are evicted.
        """
        if not entry.bytes:
            entry.bytes = record_bytes(entry.template) + sum(
                _compiled_bytes(entry, c) for c in (entry.plan, entry.code) if c is not None)
        with self._lock:
            entries = self._entries
            held = entries.get(key)
            if held is not None:  # another thread built it first: use that one
                entries.move_to_end(key)
                return held
            entries[key] = entry
            entry.owner = self
            self.nodes += len(entry.template.nodes)
            self.bytes += entry.bytes
            self._evict()
            return entry

    def attach(self, entry: Entry, form: str, compiled):
        """Set ``entry``'s compiled ``form`` ("code" or "plan"), count its bytes while
        ``entry`` is held here, and evict beyond the bounds. Returns ``compiled``."""
        setattr(entry, form, compiled)
        grown = _compiled_bytes(entry, compiled)
        with self._lock:
            entry.bytes += grown
            if entry.owner is self:
                self.bytes += grown
                self._evict()
        return compiled

    def _evict(self) -> None:
        """Drop least recently used entries beyond the bounds (one entry always stays)."""
        entries = self._entries
        while len(entries) > 1 and (len(entries) > self.maxsize or self.nodes > self.maxnodes
                                    or self.bytes > self.maxbytes):
            _, old = entries.popitem(last=False)
            old.owner = None
            self.nodes -= len(old.template.nodes)
            self.bytes -= old.bytes


def attach(entry: Entry, form: str, compiled):
    """``TemplateCache.attach`` on the cache holding ``entry`` (or just set it)."""
    owner = entry.owner
    if owner is None:
        setattr(entry, form, compiled)
        return compiled
    return owner.attach(entry, form, compiled)


def _compiled_bytes(entry: Entry, compiled) -> int:
    """Bytes of a compiled form, less the template it refers to (counted already)."""
    return record_bytes(compiled, exclude=(Template, Node))


def _new_entry(root, key: int, order: list) -> Entry:
    return Entry(without_gc(_build, (root, key, order)))


#: the process-wide cache both engines use
SHARED = TemplateCache()
#: the same for runs whose executor may place calls remotely (calls.DISTRIBUTED):
#: their compiled forms send every placeable call through the call protocol
SHARED_DISTRIBUTED = TemplateCache()


def lookup(root, use_cache: bool) -> tuple[Entry, list | tuple]:
    """The entry for ``root`` and its bound inputs (a fresh entry when ``use_cache`` is off).

    On a miss the canonical order that builds the template also gives the
    inputs, so a cold workflow is walked once, not twice. A DAG whose key comes
    back (a loop whose body is a DAG, a workflow run again) gets a binding guide:
    the next DAG of the same root shape is bound by following it
    (``template.bind_by_guide``, which also checks the sharing is the same), with
    no key walk; any other sharing takes the key walk as before. A small tree
    whose key comes back is bound by code written for its key (``_bind_tree``).
    """
    shared = SHARED if not DISTRIBUTED.get() else SHARED_DISTRIBUTED
    if use_cache and not root.tree:
        entry = shared.dags.get(root.shape)
        if entry is not None and entry.owner is shared:
            inputs = bind_by_guide(root, entry.guide)
            if inputs is not None and shared.get(entry.template.key) is entry:
                return entry, inputs
    key, order = key_and_order(root)
    entry = shared.get(key) if use_cache else None
    if entry is None:
        if order is None and root.children:
            order = canonical_nodes(root, True)
        entry = _new_entry(root, key, order)
        if use_cache:
            entry = shared.put(key, entry)
    elif order is not None:  # a DAG met again: guide the binding of the next one
        _guide(shared, root.shape, entry, order)
    if order is not None:
        return entry, inputs_from_order(order)
    if root.children and use_cache:
        return entry, _bind_tree(entry, root)
    return entry, bind_inputs(root, entry.template)


_UNWRITTEN = ((), None)  # Entry.guide of a tree that bind_inputs walks (large, or routed)


def _bind_tree(entry: Entry, root) -> list:
    """The inputs of tree ``root``, whose key is ``entry``'s: from the tree's binder
    written out (``template.tree_binder``, made at the key's first hit: a small tree
    run again, a tail loop's body) or by ``bind_inputs``' walk."""
    guide = entry.guide
    if guide is None:
        binder = tree_binder(root)
        guide = attach(entry, "guide", _UNWRITTEN if binder is None else ((), binder))
    return guide[1](root) if guide[1] is not None else bind_inputs(root, entry.template)


_GUIDED_LIMIT = 4096  # root shapes with a guide, per cache


def _guide(shared: TemplateCache, shape: int, entry: Entry, order: list) -> None:
    if entry.guide is None:
        guide = dag_guide(order)
        if guide is None:
            return
        shared.attach(entry, "guide", guide)
    if len(shared.dags) >= _GUIDED_LIMIT:
        shared.dags.clear()  # bounded: a shape met again only walks its key once more
    shared.dags[shape] = entry
