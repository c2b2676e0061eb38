"""Mono2Mesh backend: single-view reconstruction library and local server.

The backend never imports the ``training`` package (checked by ``tests/test_import_rules.py``).
"""

__version__ = "0.1.0"
