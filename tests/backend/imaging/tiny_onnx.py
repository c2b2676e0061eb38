"""Tiny ONNX models built in code for the mask-model tests (no real model is ever needed).

``channel_model(weights, size)``: input "image" (1, 3, size, size) float32 (or dynamic h, w with
``size=None``), output "mask" (1, 1, h, w) = a 1x1 convolution: ``sum_c weights[c] * input[c]``. With
weights (1, -1, 0) the output is high where the (normalised) input is reddish.
``flat_model()``: an input of rank 2 (a model that is not an image segmenter).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REDDISH = (1.0, -1.0, 0.0)


def channel_model(weights: Sequence[float] = REDDISH, size: int | None = 64) -> bytes:
    """The serialised 1x1-convolution model (module docstring)."""
    height: int | str = size if size is not None else "h"
    width: int | str = size if size is not None else "w"
    batch: int | str = 1 if size is not None else "n"
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, height, width])
    mask = helper.make_tensor_value_info("mask", TensorProto.FLOAT, [batch, 1, height, width])
    kernel = numpy_helper.from_array(np.asarray(weights, dtype=np.float32).reshape(1, 3, 1, 1), "kernel")
    node = helper.make_node("Conv", ["image", "kernel"], ["mask"], kernel_shape=[1, 1])
    graph = helper.make_graph([node], "reddish", [image], [mask], initializer=[kernel])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def flat_model() -> bytes:
    """A model whose input is (1, 10): not an image model."""
    vector = helper.make_tensor_value_info("vector", TensorProto.FLOAT, [1, 10])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 10])
    graph = helper.make_graph([helper.make_node("Relu", ["vector"], ["out"])], "flat", [vector], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
