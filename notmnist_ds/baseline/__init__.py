"""NumPy baselines for notMNIST: softmax regression and a ReLU MLP in float32.

``train_baseline.py`` at the repository root is the command line. The modules:

- ``data``: read a build's splits into float32 pixels and int64 labels;
  ``png`` decodes the PNG image column in bulk.
- ``network``: the network and softmax cross-entropy.
- ``trainer``: hyperparameters and one epoch of SGD with momentum or Adam;
  ``blas`` has the matrix products that accumulate into their output.
- ``fit``: epochs with learning-rate decay and early stopping.
- ``evaluation``: accuracy, loss and confusion matrix on a split.
- ``reports``: curves and tables; ``experiments``: runs, sweeps, comparisons.

None of them imports SciPy, imagehash or ``dedup``, which would load a second
OpenBLAS into the training process.
"""
