"""One way to open an ONNX model on the CPU for the engines that run onnxruntime (Silero VAD, Smart Turn,
CLIP): its threads, quiet logs, and onnxruntime's own untyped errors turned into an ``EngineUnavailable``
that says what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aria.errors import EngineUnavailable

__all__ = ["cpu_session"]


def cpu_session(path: Path, *, threads: int, engine: str, fix: str, install_fix: str = "") -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` on the CPU with ``threads`` intra-op threads
    (0: onnxruntime's default). ``fix`` is appended to a load failure's message, ``install_fix`` to a
    missing onnxruntime's."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailable(f"onnxruntime is not installed; {install_fix}", engine=engine) from exc
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped pybind errors
        raise EngineUnavailable(f"cannot load {path} as an ONNX model ({exc}); {fix}", engine=engine) from exc
