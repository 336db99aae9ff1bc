"""asv benchmarks of numba_gn (numpy/scipy layout: ``bench_<area>.py`` + shared ``common.py``).

* ``bench_groupnorm``: ``GroupNormForward``, ``GroupNormBackward`` and
  ``GroupNormForwardBackward``, each with one ``time_<layout>`` method per layout over
  size x dtype, and ``PeakMemoryForward`` / ``PeakMemoryBackward``;
* ``bench_peers``: the same work done by ``np.copyto`` (``Copy``, the bandwidth floor), plain
  NumPy (``NumPyForward``, ``NumPyForwardBackward``) and PyTorch's ``group_norm``
  (``TorchForward``, ``TorchForwardBackward``; skipped, saying so, without PyTorch);
* ``bench_compile``: import + first call in a fresh interpreter, disk cache warm and cold;
* ``bench_training``: one training step of the demo CNN (numba_gn and PyTorch) and the
  ``GroupNormalization`` layer under a ``GradientTape`` (forward + gradient).

New areas get their own ``bench_<area>.py``: build data with the seeded, cached factories in
``common.py`` (which is only ever appended to) and warm the JIT in ``setup``. Name what is
compared so that a regex on ``Class.method(params)`` selects it: the README's *Benchmarks*
section lists the selections for a quick check, and ``tests/test_benchmarks_wellformed.py``
checks how many combinations each one picks.
"""
