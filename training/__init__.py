"""Mono2Mesh training: datasets, losses, the training loop and one trainer per method.

Builds the checkpoints ``backend.checkpoints`` loads. Depends on ``backend``; never the reverse.
"""
