"""The differential fuzz harness: both engines are the same language.

Random workflows (as data) run on a reference evaluator and on both engines
with every optimisation switched on and off; everything must agree. Modules:

``workflow``   the AST of a workflow program, its JSON form, a Python rendering
``library``    the fixed task library (pure tasks that log their calls)
``reference``  the reference evaluator (plain recursive Python, no engine code)
``build``      AST -> fresh ``LazyResult`` trees for the engines
``features``   which optional language features the engines implement now
``oracle``     runs one program everywhere and compares (value, calls, events, ...)
``minimize``   shrinks a failing program on its AST
``session``    one search: Hypothesis property, bounded shrinking, minimizing, saving
``corpus``     failing and hand-written programs kept as JSON in ``corpus/``
``long``       the time-boxed fuzzing run: ``python -m tests.differential.long``

The generator (Hypothesis strategies) lives in ``tests/strategies.py``, the
Hypothesis profiles in ``tests/conftest.py``.
"""
