"""A page's values checked before a run, as the API and the command line check them: a value out of range is refused
by the same rule, in the page's words (its labels, not the API's names), under the field and beside the buttons, and
never changed into an allowed one behind the user's back."""

from __future__ import annotations

import gradio as gr

from stg import inputs
from stg.inputs import PANELS, Command

# Gradio's slider puts a typed value back into its range when its number box loses focus (50 becomes 10): keep what was
# typed, so that the check below refuses it by name. The arrows and the slider itself stay within the range.
KEEP_TYPED = """<script>
document.addEventListener("blur", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || !(box.getAttribute("aria-label") || "").startsWith("number input for ")) {
        return;
    }
    if (box.valueAsNumber < Number(box.min) || box.valueAsNumber > Number(box.max)) event.stopImmediatePropagation();
}, true);
</script>"""


class Refused:
    """A page's value its control could not read, with the message saying why: carried to the check, which shows it
    under the field (an API's control raises instead)."""

    def __init__(self, name: str, message: str):
        self.name, self.message = name, message

    def __str__(self) -> str:
        return self.message


def page_names(controls: dict[str, gr.components.Component], command: Command) -> dict[str, str]:
    """Each setting's name on this page: its label, with its panel where two controls share a label (w, rescale)."""
    labels = {s.name: controls[s.name].label for s in command.settings if s.name in controls}
    shared = {label for label in labels.values() if list(labels.values()).count(label) > 1}
    groups = {s.name: s.group for s in command.settings}
    return {name: f"{label} ({PANELS[groups[name]]})" if label in shared and groups.get(name) in PANELS else label
            for name, label in labels.items()}


def problem(backend, command: Command, values: dict) -> tuple[str, str] | None:
    """The first bad value of a request as (setting name, message), or None: the control's own refusal, else the same
    check the endpoint makes."""
    for name, value in values.items():
        if isinstance(value, Refused):
            return name, value.message
    try:
        inputs.task(backend, command, values)
    except ValueError as error:
        message = str(error)
        names = sorted((s.name for s in command.settings), key=len, reverse=True)
        name = getattr(error, "name", None) or next((n for n in names if message.startswith(n)), "")
        return name, message
    return None


def in_page_words(message: str, names: dict[str, str]) -> str:
    return inputs.rename(message, names)


def checker(backend, command: Command, controls: dict[str, gr.components.Component]):
    """Gradio's validator for a page's run: a message under the field the problem is in, or nothing; the run starts
    only when every value passes."""
    order = [s.name for s in command.settings]
    names = page_names(controls, command)

    def check(*values):
        found = problem(backend, command, dict(zip(order, values)))
        name, message = found or ("", "")
        return [gr.validate(n != name, in_page_words(message, names) if n == name else "") for n in order]

    return check


def status_of(backend, command: Command, controls: dict[str, gr.components.Component]):
    """What the page says beside its buttons when a request cannot run (the same message as under its field), or ""."""
    order = [s.name for s in command.settings]
    names = page_names(controls, command)

    def status(values) -> str:
        found = problem(backend, command, dict(zip(order, values)))
        return f"**Not run.** {in_page_words(found[1], names)}" if found else ""

    return status
