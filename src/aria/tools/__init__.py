"""Tools the language model may call, and running them safely.

* :mod:`aria.tools.registry`: the :class:`~aria.tools.registry.Tool` definition, its
  :class:`~aria.tools.registry.ToolContext`, and the :class:`~aria.tools.registry.ToolRegistry` (with
  plugin discovery through the ``aria.tools`` entry-point group);
* :mod:`aria.tools.schema`: the JSON-schema subset tool arguments are validated against;
* :mod:`aria.tools.runner`: :class:`~aria.tools.runner.ToolRunner` (validation, confirmation, timeouts;
  failures become results, never exceptions) and :func:`~aria.tools.runner.run_program` (external
  programs in a clean, bounded sandbox-lite);
* :mod:`aria.tools.builtin` and :mod:`aria.tools.calculator`: the tools Aria ships.

This package sits beside :mod:`aria.engines`: it imports only :mod:`aria.types` and :mod:`aria.errors`.
"""
