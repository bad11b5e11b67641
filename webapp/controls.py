"""The page's control of each setting, made from the settings table, at its default and guarded with its name."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from stg import Backend
from stg.backend import MAX_PROMPT_CHARS, MAX_SEED
from stg.inputs import Setting
from stg.values import TOO_MANY_PIXELS, Blocks, Choice, Extra, Number, Picture, Seed, Size, Text

from .texts import rule_on_page


def blocks_text(blocks) -> str:
    return ", ".join(map(str, blocks))


def control(setting: Setting, backend: Backend, command: str = "compare", **options) -> gr.components.Component:
    """The control of one setting at this command's default (a sweep's sizes: the explorer's); options go to the
    component (label, value, scale, ...)."""
    value = backend.preset.default(setting.preset, command == "sweep") if setting.preset else setting.default
    options = {"label": setting.label, "value": value, **options}
    component = CONTROLS[type(setting.kind)](setting, backend, options)
    return guard(component, setting.name, rule_on_page(setting, backend.preset))


def _textbox(setting, backend, options):
    return gr.Textbox(max_length=MAX_PROMPT_CHARS, **options)


def _image(setting, backend, options):
    options.pop("value")
    return gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], visible=backend.image_to_video,
                    height=240, **options)


def _size(setting, backend, options):
    low, high, step, _ = backend.preset.bounds(setting.name)
    return gr.Slider(low, high, step=step, **options)


def _seed(setting, backend, options):
    return gr.Number(precision=0, minimum=0, maximum=MAX_SEED, **options)


def _number(setting, backend, options):
    low, high = setting.kind.page_range
    return gr.Slider(low, high, step=setting.kind.step, **options)


def _extra(setting, backend, options):
    """A box, not a slider: empty (None) is a value of its own, what `none` says."""
    return gr.Number(minimum=setting.kind.low, maximum=setting.kind.high, step=setting.kind.step,
                     placeholder=f"empty: {setting.kind.none}", **options)


def _radio(setting, backend, options):
    return gr.Radio([(f"{key}: {text}", key) for key, text in setting.kind.options.items()], **options)


def _blocks(setting, backend, options):
    if isinstance(options["value"], (list, tuple)):
        options["value"] = blocks_text(options["value"])
    return gr.Textbox(max_lines=1, **options)


CONTROLS = {Text: _textbox, Picture: _image, Size: _size, Seed: _seed, Number: _number, Extra: _extra, Choice: _radio,
            Blocks: _blocks}


def guard(component, name: str, allowed: str):
    """Gradio's own input checks raise without the field's name; say which field and what it allows.
    None passes through unchanged and means the preset's default."""
    inner = component.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        try:
            return inner(payload)
        except Image.DecompressionBombError:
            raise gr.Error(f"{name} {TOO_MANY_PIXELS}", print_exception=False) from None
        except Exception:
            shown = getattr(payload, "orig_name", None) or payload
            shown = shown if isinstance(shown, (int, float)) else str(shown)[:60]
            raise gr.Error(f"{name} must be {allowed}, got {shown!r}", print_exception=False) from None

    component.preprocess = preprocess
    return component
