"""The tail-call cache: templates and their compiled forms, shared by both engines.

Bounded twice: by entries (``maxsize``) and by the template nodes they hold
in all (``maxnodes``), so a stream of huge one-off workflows cannot pin
memory (least recently used entries go first).

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
import threading
from collections import OrderedDict

from .calls import DISTRIBUTED
from .template import (
    Template,
    bind_inputs,
    build_template,
    canonical_nodes,
    inputs_from_order,
    key_and_order,
)

DEFAULT_MAXSIZE = 4096  # entries
DEFAULT_MAXNODES = 1 << 18  # template nodes over all entries


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

    __slots__ = ("template", "plan", "code", "tier")

    def __init__(self, template: Template):
        self.template = template
        self.plan = None  # graph executor's Plan
        self.code = None  # VM's Code
        self.tier = [0, None]  # the VM's second tier: [entries, JIT ops or ()] (jit.py)


class TemplateCache:
    """A bounded LRU of ``Entry`` by template key.

    Safe to share between threads (``run()`` called from several threads):
    ``get``, ``put`` and ``clear`` hold one lock for their few dict
    operations. Building a template on a miss happens outside the lock; when
    two threads build the same one, the first ``put`` wins and both use its
    entry. A lookup takes the lock once per template, never per iteration of
    a hot loop.
    """

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE, maxnodes: int = DEFAULT_MAXNODES):
        if maxsize < 1 or maxnodes < 1:
            raise ValueError(f"TemplateCache bounds must be >= 1, got {maxsize}, {maxnodes}")
        self.maxsize = maxsize  # at most this many entries
        self.maxnodes = maxnodes  # and at most this many template nodes in all
        self.nodes = 0  # template nodes held now
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nodes = 0

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
        with self._lock:
            entries = self._entries
            held = entries.get(key)
            if held is not None:  # another thread built it first: use that one
                entries.move_to_end(key)
                return held
            entries[key] = entry
            self.nodes += len(entry.template.nodes)
            while len(entries) > 1 and (len(entries) > self.maxsize
                                        or self.nodes > self.maxnodes):
                _, old = entries.popitem(last=False)
                self.nodes -= len(old.template.nodes)
            return entry


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
    inputs, so a cold workflow is walked once, not twice.
    """
    key, order = key_and_order(root)
    shared = SHARED if not DISTRIBUTED.get() else SHARED_DISTRIBUTED
    entry = shared.get(key) if use_cache else None
    if entry is None:
        if order is None and root.children:
            order = canonical_nodes(root, True)
        entry = _new_entry(root, key, order)
        if use_cache:
            entry = shared.put(key, entry)
    if order is not None:
        return entry, inputs_from_order(order)
    return entry, bind_inputs(root, entry.template)
