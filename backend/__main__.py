"""``python -m backend`` is the ``mono2mesh`` command (the Blender add-on starts the server this way)."""

from backend.cli import main

raise SystemExit(main())
