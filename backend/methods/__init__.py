"""Reconstruction methods behind one protocol (``base.Method``), their registry and the photo pipeline.

- ``base``: the ``Method`` protocol, ``Reconstruction``/``Report``, ``MethodOptions``, ``Cancelled``.
- ``registry``: names -> classes, ``create_method``, ``parse_options``, ``method_info``.
- ``pipeline``: decode -> mask -> crop -> ``method.reconstruct`` -> export files.
- ``fit``: the embedded default (no checkpoint; texture by ``backend.meshing.texturing``);
  ``preview``: the preview strip; ``multiview``: fitting one mesh to many calibrated silhouettes.
"""
