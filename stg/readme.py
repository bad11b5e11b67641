"""The README's generated parts, each written between its markers from the one table it documents.

`python -m stg.readme` rewrites them all; a test fails while the README and the tables disagree.
"""

from __future__ import annotations

from pathlib import Path

from stg import inputs, presets

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = {"settings": inputs.reference, "hub ids": presets.hub_id_table}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: written by python -m stg.readme -->", f"<!-- /{name} -->"


def written(text: str) -> str:
    """The README's text with every generated part written afresh."""
    for name, make in SECTIONS.items():
        begin, end = markers(name)
        start, stop = text.index(begin) + len(begin), text.index(end)
        text = f"{text[:start]}\n{make()}\n{text[stop:]}"
    return text


if __name__ == "__main__":
    README.write_text(written(README.read_text()))
