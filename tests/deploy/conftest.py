"""Fixtures of the deploy tests: the image's model folder, with TensorFlow made unimportable as in the image."""

from __future__ import annotations

import pytest

from tests.deploy.dockerfile import ROOT

#: Put first on PYTHONPATH: Python runs sitecustomize at start-up in every process of the server.
BLOCK_TENSORFLOW = """
import sys
BLOCKED = {"tensorflow", "keras", "tf2onnx", "onnx", "jax", "torch"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed in the serving image")
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="session")
def model_dir_env(tmp_path_factory) -> dict[str, str]:
    """The image's model folder is the repository's model/, committed ONNX export included; and the blocker
    that makes TensorFlow, Keras and the exporters unimportable, as they are in the image."""
    blocker = tmp_path_factory.mktemp("no_tensorflow")
    (blocker / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    return {"NERVE_MODEL_DIR": str(ROOT / "model"), "PYTHONPATH": str(blocker)}
