"""How the SemFi DiT runs each pass: the ``backend`` and ``attention`` settings.

- ``eager``: diffsynth's own forward (``model_fn_wan_video``) on the merged weights; today's path.
- ``compile``: our exportable forward (``dit.py``) with each block under ``torch.compile``.
- ``onnx``: the exported graph under onnxruntime on the CPU (the TensorRT graph, checked end to end).
- ``tensorrt``: the same graph built into a TensorRT engine ahead of time (``sfi compile``).

Importing this package is cheap (no torch); the modules inside load heavy libraries.
"""

from __future__ import annotations

BACKENDS = ("eager", "compile", "onnx", "tensorrt")


def backend_problem(backend: str, attention: str, device: str, dtype_name: str) -> str | None:
    """Why ``backend`` with ``attention`` cannot run on ``device`` in ``dtype_name`` here, or None (one line)."""
    import importlib.util
    import os
    import shutil

    from engines.semfi_parts.backends.attention import attention_problem

    if backend not in BACKENDS:
        return f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'"
    if backend == "onnx":
        missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
        if missing:
            return f"backend onnx needs {', '.join(missing)}, not installed: run 'bash scripts/install.sh onnx'"
        if device != "cpu":
            return f"backend onnx runs on the CPU (onnxruntime) and the device is '{device}'; use --device cpu, or --backend tensorrt on a GPU"
        if dtype_name != "float32":
            return f"backend onnx runs float32 graphs and dtype is {dtype_name}; use --dtype float32 (auto on the CPU)"
    if backend == "tensorrt":
        if importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnx") is None:
            return "backend tensorrt exports through onnx and onnxscript, not installed: run 'bash scripts/install.sh gpu'"
        from engines.semfi_parts.backends.tensorrt import tensorrt_problem

        problem = tensorrt_problem(device)
        if problem:
            return problem
    if backend == "compile":
        if device.startswith("cuda") and importlib.util.find_spec("triton") is None:
            return "backend compile on a GPU needs Triton (it comes with torch's CUDA wheels); reinstall torch or use --backend eager"
        compiler = os.environ.get("CXX", "g++")
        if device == "cpu" and shutil.which(compiler) is None:
            return f"backend compile on the CPU needs a C++ compiler ('{compiler}' not found): install g++ or use --backend eager"
    if backend in ("onnx", "tensorrt") and attention != "sdpa":
        return f"backend {backend} runs the exported graph, whose attention is sdpa (TensorRT fuses it); drop --attention {attention}"
    return attention_problem(attention, device)
