"""Preparing the network input: resize to the model's size and normalise with its constants."""

import numpy as np

from model.preprocessing import InputSpec, to_model_batch, to_model_input


def test_model_input_is_resized_and_normalised():
    spec = InputSpec(height=16, width=24, mean=0.5, std=0.25)
    gray = np.full((420, 580), 0.75, np.float32)
    x = to_model_input(gray, spec)
    assert x.shape == (16, 24, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x, 1.0, atol=1e-6)
    batch = to_model_batch([gray, np.zeros((186, 256), np.float32)], spec)
    assert batch.shape == (2, 16, 24, 1)
    np.testing.assert_allclose(batch[1], -2.0, atol=1e-6)
