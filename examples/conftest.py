"""Make each example importable from a fresh checkout, whatever pytest's import mode:
the examples are small projects run from their own directory, not packages."""

import sys
from pathlib import Path

for example in ("django_app", "flask_app", "starlette_app"):
    sys.path.insert(0, str(Path(__file__).parent / example))
