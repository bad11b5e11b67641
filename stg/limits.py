"""The limits every surface states (the engine checks them; the settings table, the page and the command line say
them): text length, the seed's range, a sweep's panels per run, and how an integer rule reads. Nothing here
imports torch, so that `python -m stg --help` starts at once."""

from __future__ import annotations

import unicodedata

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**32 - 1
PANELS_PER_RUN = 4  # a sweep's panels denoised together in one batched run
CACHE_THRESHOLDS = (0.0, 1.0)  # the step cache's reuse threshold (stg/cache.py); 0: off
VISIBLE = "LMNPS"  # Unicode categories a person sees: letters, marks, numbers, punctuation, symbols
LINE_BREAKS = "\t\n\r"  # the control characters a pasted text may hold


def integer_rule(low: int, high: int, step: int = 1, offset: int = 0) -> str:
    """'an integer in [2, 50]', 'of the form 8n+1 in [9, 49]', 'a multiple of 32 in [32, 256]'; 'exactly 32' where
    a model takes one size only."""
    if low == high:
        return f"exactly {low}"
    form = "an integer" if step == 1 else f"of the form {step}n+{offset}" if offset else f"a multiple of {step}"
    return f"{form} in [{low}, {high}]"


def text_problem(text, required: bool) -> str | None:
    """What is wrong with a prompt (required) or a negative prompt (may be empty), or None: not a text, too long,
    a control character no keyboard types (NUL, escape, ...), or, where required, nothing visible at all (only
    spaces, or zero-width characters)."""
    if not isinstance(text, str):
        return f"must be a text, got {type(text).__name__}"
    if len(text) > MAX_PROMPT_CHARS:
        return f"is too long: at most {MAX_PROMPT_CHARS} characters, got {len(text)}"
    control = next((c for c in text if unicodedata.category(c) == "Cc" and c not in LINE_BREAKS), None)
    if control is not None:
        return f"must not contain control characters, got {control!r} at position {text.index(control)}"
    if required and not any(unicodedata.category(c)[0] in VISIBLE for c in text):
        return f"must be a text with at least one visible character, got {text[:60]!r}"
    return None
