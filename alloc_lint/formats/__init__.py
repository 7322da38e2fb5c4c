"""Output formats. Each module has `render(diagnostics, errors, ...) -> str`."""
from . import github, json_format, sarif, text

FORMATS = {"text": text, "json": json_format, "sarif": sarif, "github": github}
# Formats that carry fixes as text edits (computing them costs a LibCST parse).
NEEDS_EDITS = {"json", "sarif"}
