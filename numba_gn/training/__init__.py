"""Training small models: losses, optimizers, metrics, the fit loop and weight files.

* :mod:`~numba_gn.training.losses` — MeanSquaredError, BinaryCrossentropy,
  CategoricalCrossentropy, SparseCategoricalCrossentropy (Keras names, ``from_logits``);
* :mod:`~numba_gn.training.optimizers` — SGD, Adam, AdamW with Keras's update formulas;
* :mod:`~numba_gn.training.metrics` — accuracy;
* :class:`~numba_gn.training.model.Trainer` — ``compile``/``fit``/``evaluate``/``predict``
  (mixed into :class:`numba_gn.layers.Sequential`);
* :mod:`~numba_gn.training.saving` — ``.npz`` weight files, read without pickle.
"""

from numba_gn.training import losses, metrics, optimizers, saving
from numba_gn.training.model import Trainer
from numba_gn.training.progbar import History, Progbar

__all__ = ["History", "Progbar", "Trainer", "losses", "metrics", "optimizers", "saving"]
