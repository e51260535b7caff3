"""The contract between training and serving: architecture, decoding, pre/postprocessing, metric, RLE, artifact.

Heavy imports (Keras, TensorFlow) stay in `model.architecture` and `model.segmenter`, so tools that only
decode images or score masks start fast.
"""

import os

# TensorFlow's C++ info lines (CPU features, XLA notices) are noise to users of the CLIs and the service;
# a user who wants them sets TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
