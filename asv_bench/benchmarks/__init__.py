"""asv benchmarks of numba_gn (numpy/scipy layout: ``bench_<area>.py`` + shared ``common.py``).

* ``bench_groupnorm``: ``group_norm`` forward, backward, forward+backward and peak memory,
  over layout x size x dtype;
* ``bench_peers``: the same work done by ``np.copyto`` (bandwidth floor), plain NumPy and
  PyTorch's ``group_norm`` (skipped when torch is not importable);
* ``bench_compile``: import + first call in a fresh interpreter, disk cache warm and cold.

Still to come, added by their authors once the code exists: ``bench_layer.py`` (the
``GroupNormalization`` layer under a ``GradientTape``: forward + gradient) and
``bench_training.py`` (one training step of the demo model). Build their data with the
factories in ``common.py`` and warm the JIT in ``setup``.
"""
