"""The jobs: training and batch prediction, as compositions of library steps."""

import forecaster  # noqa: F401  (first: it quiets TensorFlow's start-up lines before a job imports Keras)
