"""Less to read: the libraries' loading bars, advice and deprecation notes off, and an error in one line. The app's
log and the command line's output then say what the user needs (the page and the command line show their own
progress)."""

from __future__ import annotations

import warnings


def quiet_libraries() -> None:
    import diffusers
    import huggingface_hub
    import transformers

    for logging in (diffusers.utils.logging, transformers.utils.logging):
        logging.set_verbosity_error()
        logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
    for library in ("diffusers", "transformers", "huggingface_hub"):  # deprecation notes and advice to developers
        warnings.filterwarnings("ignore", module=rf"{library}(\.|$)")


def one_line(error: BaseException) -> str:
    """The error's message on one line (at most 500 characters), or its type where it has none."""
    return " ".join(str(error).split())[:500] or type(error).__name__


def cannot_load(model: str, error: BaseException) -> str:
    """Why a model did not load (the hub out of reach, a folder without weights, too little memory), in one line."""
    return f"cannot load {model!r}: {type(error).__name__}: {one_line(error)}"
