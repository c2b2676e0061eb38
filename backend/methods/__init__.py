"""Reconstruction methods behind one protocol (``base.Method``), their specs, registry and the photo pipeline.

- ``base``: the ``Method`` protocol, ``Reconstruction``/``Report``, ``MethodOptions``, ``BaseMethod``.
- ``spec``: ``MethodSpec``, each method module's ``SPEC`` (name, options, checkpoint need, ``build``).
- ``registry``: names -> specs, ``create_method``, ``parse_options``, ``method_info``.
- ``checkpointed``: ``CheckpointedMethod``, the base of the methods that load a trained network.
- ``fit`` (the embedded default, no checkpoint), ``softras``, ``adaptive-flow``, ``pointcloud-poisson``;
  ``fit_options`` and ``fitted``: what the methods that run the fitting engine (``backend.fitting``)
  share.
- ``pipeline``: decode -> mask -> crop -> ``method.reconstruct`` -> export files; ``preview``: the
  preview strip.
"""
