"""``python -m backend.server``: the same as ``mono2mesh serve`` (same options)."""

import argparse

from backend.server.command import add_arguments, main

parser = argparse.ArgumentParser(
    prog="python -m backend.server", description="Run the Mono2Mesh backend server."
)
add_arguments(parser)
raise SystemExit(main(parser.parse_args()))
