"""The controls of each setting, made from the settings table and guarded with its name: the page's, at their
defaults, and the API's, hidden and empty, so that a parameter left out is None (the default) there."""

from __future__ import annotations

from functools import partial

import gradio as gr
from PIL import Image

from stg import Backend
from stg.inputs import Setting
from stg.limits import MAX_PROMPT_CHARS, MAX_SEED
from stg.values import TOO_MANY_PIXELS, Blocks, Choice, Extra, Number, Picture, Seed, Size, Text, sent

from .texts import rule_on_page
from .validation import Refused


def blocks_text(blocks) -> str:
    return ", ".join(map(str, blocks))


def control(setting: Setting, backend: Backend, command: str = "compare", api: bool = False,
            **options) -> gr.components.Component:
    """The control of one setting; options go to the component (label, value, scale, ...). On the page it starts at
    this command's default (a sweep's sizes: the explorer's); for the API (`api`) it is hidden and holds the table's
    fixed default, else None: Gradio gives an API parameter its component's value as default, and a parameter left
    out must mean what None means (the preset's value, or the followed setting's)."""
    value = setting.default
    if setting.preset and not api:
        value = backend.preset.default(setting.preset, command == "sweep")
    options = {"label": setting.label, "value": value, **options}
    options.update({"visible": False} if api else {})
    component = CONTROLS[type(setting.kind)](setting, backend, options)
    return guard(component, setting.name, rule_on_page(setting, backend.preset), on_page=not api)


def _textbox(setting, backend, options):
    box = gr.Textbox(max_length=MAX_PROMPT_CHARS, **options)
    box.preprocess = _only(str, box.preprocess)  # Gradio would read a list or a number as its text
    return box


def _image(setting, backend, options):
    options.pop("value")
    options.setdefault("visible", backend.image_to_video)
    return gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], height=240, **options)


def _size(setting, backend, options):
    low, high, step, _ = backend.preset.bounds(setting.name)
    return _ranged(low, high, step, options)


def _seed(setting, backend, options):
    number = gr.Number(precision=0, minimum=0, maximum=MAX_SEED, **options)
    number.preprocess = lambda payload: payload  # not rounded: a seed of 2.5 or true is refused, not read as 2 or 1
    return number


def _number(setting, backend, options):
    return _ranged(setting.kind.low, setting.kind.high, setting.kind.step, options)


def _ranged(low, high, step, options):
    """A slider on the page; for the API a number, which may be None (a slider's would be its minimum). A setting
    with one allowed value (a model made for one size) is shown fixed: Gradio's slider needs a range."""
    if options["value"] is None:
        return gr.Number(minimum=low, maximum=high, step=step, **options)
    if low == high:
        return gr.Number(minimum=low, maximum=high, interactive=False, **options)
    return gr.Slider(low, high, step=step, **options)


def _extra(setting, backend, options):
    """A text box: empty (None) is a value of its own, what `none` says, and Gradio's number box cannot hold it (the
    page shows None there as 0, and sends 0). It takes a number, or a number written out."""
    if options["value"] is not None:
        options["value"] = f"{options['value']:g}"
    box = gr.Textbox(max_lines=1, placeholder=f"empty: {setting.kind.none}", **options)
    box.preprocess = _only((str, int, float), partial(_number_or_empty, setting))
    return box


def _number_or_empty(setting, payload):
    """Text read as the command line reads it (`Number.parse`); empty text is None."""
    if isinstance(payload, str):
        return setting.kind.parse(payload, setting) if payload.strip() else None
    return payload


def _radio(setting, backend, options):
    return gr.Radio([(f"{key}: {text}", key) for key, text in setting.kind.options.items()], **options)


def _blocks(setting, backend, options):
    if isinstance(options["value"], (list, tuple)):
        options["value"] = blocks_text(options["value"])
    box = gr.Textbox(max_lines=1, **options)
    box.preprocess = _only((str, int), box.preprocess)  # "14, 19", or one block as a number
    return box


def _only(types, preprocess):
    """Gradio's preprocessing, for payloads of these types only (the guard refuses the others by name)."""
    def checked(payload):
        if isinstance(payload, bool) or not isinstance(payload, types):
            raise TypeError(type(payload).__name__)
        return preprocess(payload)

    return checked


CONTROLS = {Text: _textbox, Picture: _image, Size: _size, Seed: _seed, Number: _number, Extra: _extra, Choice: _radio,
            Blocks: _blocks}


def guard(component, name: str, allowed: str, on_page: bool = False):
    """Gradio's own input checks raise without the field's name; say which field and what it allows (on the page, as
    a Refused value that the page's check shows under the field). None passes through unchanged and means the
    preset's default."""
    inner = component.preprocess

    def refuse(message: str):
        if on_page:
            return Refused(name, message)
        raise gr.Error(message, print_exception=False)

    def preprocess(payload):
        if payload is None:
            return None
        try:
            return inner(payload)
        except Image.DecompressionBombError:
            return refuse(f"{name} {TOO_MANY_PIXELS}")
        except Exception as error:
            shown = getattr(payload, "orig_name", None) or payload  # an upload: the name it was sent with
            shown = shown[:60] if isinstance(shown, str) else shown
            # A payload of the wrong type says its type: '4' for a number is text, 123 for a text a number.
            shown = sent(shown, number=not isinstance(component, gr.Textbox)) if isinstance(error, TypeError) \
                else repr(shown)[:80]
            return refuse(f"{name} must be {allowed}, got {shown}")

    # In the class, not the instance: Gradio rebuilds a component from its constructor's arguments when an event
    # updates it (even with gr.skip()), and an instance's own preprocess would be lost from then on.
    base = type(component)
    vars(component).pop("preprocess", None)  # the control's own reading, kept as `inner`
    # type.__new__, not Gradio's component metaclass, which would write a .pyi stub for the new class.
    component.__class__ = type.__new__(type(base), base.__name__, (base,), {
        "preprocess": lambda self, payload: preprocess(payload), "__module__": base.__module__})
    return component
