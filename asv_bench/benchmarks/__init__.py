"""asv benchmarks of numba_gn (numpy/scipy layout: ``bench_<area>.py`` + shared ``common.py``).

* ``bench_groupnorm``: ``group_norm`` forward, backward, forward+backward and peak memory,
  over layout x size x dtype;
* ``bench_peers``: the same work done by ``np.copyto`` (bandwidth floor), plain NumPy and
  PyTorch's ``group_norm`` (skipped when torch is not importable);
* ``bench_compile``: import + first call in a fresh interpreter, disk cache warm and cold;
* ``bench_training``: one training step of the demo CNN (numba_gn and PyTorch) and the
  ``GroupNormalization`` layer under a ``GradientTape`` (forward + gradient).

New areas get their own ``bench_<area>.py``: build data with the seeded, cached factories in
``common.py`` (which is only ever appended to) and warm the JIT in ``setup``.
"""
