"""The contract between training and serving: architecture, pre/postprocessing, metric, RLE, artifact.

Heavy imports (Keras, TensorFlow) stay in `model.architecture` and `model.segmenter`, so tools that only
decode images or score masks start fast.
"""
