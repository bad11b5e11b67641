"""Tokenizers built offline from a small English word list, with single characters as a fallback so that any
prompt still encodes: a T5 unigram vocabulary, byte-pair vocabularies shaped like Llama-3's, Gemma's and CLIP's,
a byte-level one shaped like Qwen2's (with its chat template), and ByT5, which needs none."""

from __future__ import annotations

import string
from functools import cache, partial
from typing import Callable

# Common words of prompts, negative prompts and the HunyuanVideo prompt template.
WORDS = sorted(
    set(
        """
    a an the of in on at by to and or with without from into over under near through while its his her
    their this that is are was be it as for up down out off very more most
    video image photo scene shot clip film movie frame frames camera view close closeup wide angle
    angles aerial slow motion moves moving move movement movements pan pans zoom tracking static
    cinematic realistic detailed high quality best worst low resolution sharp focus blurry blur
    blurred jittery distorted deformed ugly bad noisy noise artifacts inconsistent watermark text
    overexposed underexposed static still grainy glitch flicker flickering
    red orange yellow green blue purple pink white black gray grey brown golden silver dark bright
    light colorful warm cool soft
    fox dog cat bird birds horse fish whale dolphin rabbit bear lion tiger wolf deer cow sheep duck
    butterfly bee monkey panda eagle owl dragon robot car cars train boat ship plane bike bicycle
    man woman person people child girl boy family crowd astronaut dancer chef
    tree trees forest flower flowers grass field meadow garden leaves leaf mountain mountains hill
    river lake ocean sea beach wave waves water rain snow ice fire smoke cloud clouds sky sun sunset
    sunrise moon stars night day morning evening city street road building buildings house room
    kitchen window door table desert island waterfall space planet earth
    runs running walks walking jumps jumping flies flying swims swimming dances dancing sits sitting
    stands standing plays playing eats eating looks looking turns turning falls falling rises rising
    flows flowing drives driving rides riding smiles smiling waves waving spins spinning glowing
    floating
    big small tiny large huge little old young new beautiful cute happy sad calm gentle fast quick
    lazy fluffy shiny wet dry
    one two three four five
    describe detailing following aspects main content theme shape size texture quantity spatial
    relationships objects actions events behaviors temporal physical changes background
    environment style atmosphere transitions used system user
    you helpful assistant color text light movement
    """.split()
    )
)
_PUNCT = string.punctuation
_WORDPIECE = "\u2581"  # SentencePiece's word-start marker, used by T5 and Llama tokenizers


@cache
def t5_vocab() -> list[tuple[str, float]]:
    """Unigram pieces: whole words are preferred, single characters catch anything else."""
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), (_WORDPIECE, -2.0)]
    chars = [(c, -5.0) for c in string.ascii_letters + string.digits + _PUNCT]
    words = [(_WORDPIECE + w, -1.0) for w in WORDS]
    words += [(_WORDPIECE + w.capitalize(), -1.5) for w in WORDS]
    return specials + chars + words


def t5_tokenizer():
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab=list(t5_vocab()), extra_ids=0)


def _bpe_encode(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Encode as BPE does: merge the lowest-ranked adjacent pair, leftmost first, until none is left."""
    pieces = list(pieces)
    while pairs := [(ranks[p], i) for i, p in enumerate(zip(pieces, pieces[1:])) if p in ranks]:
        _, i = min(pairs)
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def _bpe(symbols: list[str], words: list[list[str]]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A BPE vocabulary and merges under which each word of `words` encodes as one token.

    Words are added one by one: while a word encodes as several pieces, merges that join them left
    to right are appended. Later merges rank lower, so they never change how an earlier word encodes.
    """
    vocab = {s: i for i, s in enumerate(dict.fromkeys(symbols))}
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        while len(pieces := _bpe_encode(word, ranks)) > 1:
            current = pieces[0]
            for piece in pieces[1:]:
                ranks.setdefault((current, piece), len(ranks))
                current += piece
                vocab.setdefault(current, len(vocab))
    return vocab, list(ranks)


# Llama-3 style special tokens, as in the HunyuanVideo prompt template.
LLAMA_TOKENS = dict(
    unk_token="<unk>", bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", pad_token="<pad>"
)
_LLAMA_HEADERS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CLIP_TOKENS = dict(bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def _byte_fallback_vocab(specials: tuple[str, ...]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """SentencePiece-style BPE with byte fallback; words with and without a leading space, lower case and
    capitalised. Bare words matter after special tokens and newlines, as in the HunyuanVideo template, and at
    the start of a Gemma prompt (no prefix space)."""
    chars = list(string.ascii_letters + string.digits + _PUNCT + "\n") + [_WORDPIECE]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    forms = [f for w in WORDS for f in (w, w.capitalize())]
    words = [[_WORDPIECE, *f] for f in forms] + [list(f) for f in forms] + [["\n", "\n"]]
    return _bpe([*specials, *byte_tokens, *chars], words)


@cache
def llama_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    return _byte_fallback_vocab((*LLAMA_TOKENS.values(), *_LLAMA_HEADERS))


# Gemma's specials, in its own id order (LTX-2's text encoder).
GEMMA_TOKENS = dict(pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>", mask_token="<mask>")


@cache
def gemma_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    return _byte_fallback_vocab(tuple(GEMMA_TOKENS.values()))


# Qwen's ChatML, as HunyuanVideo 1.5 applies it to a system message and the prompt.
QWEN_TOKENS = dict(unk_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
_QWEN_HEADERS = ["<|im_start|>", "<|im_end|>"]
_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@cache
def qwen_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE (GPT-2's byte alphabet, 'Ġ' marks a leading space), as Qwen2's vocab.json + merges.txt hold."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    space = bytes_to_unicode()[ord(" ")]
    forms = [f for w in WORDS for f in (w, w.capitalize())]
    # Qwen keeps a run of eight spaces as one token: the HunyuanVideo 1.5 template's indented lines then make its
    # system part exactly the 108 tokens the pipeline crops.
    words = [[space, *f] for f in forms] + [list(f) for f in forms] + [[space] * 8]
    return _bpe([QWEN_TOKENS["eos_token"], *_QWEN_HEADERS, *bytes_to_unicode().values()], words)


@cache
def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP BPE (lower case, ``</w>`` marks a word's end), as its vocab.json + merges.txt would hold."""
    chars = list(string.ascii_lowercase + string.digits + _PUNCT)
    words = [[*w[:-1], w[-1] + "</w>"] for w in WORDS if len(w) > 1]
    return _bpe([*CLIP_TOKENS.values(), *chars, *(c + "</w>" for c in chars)], words)


def _bpe_tokenizer(cls: str, vocab: Callable, tokens: dict, **kwargs):
    """A transformers BPE tokenizer class over one of the vocabularies above."""
    import transformers

    vocab, merges = vocab()
    return getattr(transformers, cls)(vocab=dict(vocab), merges=list(merges), **tokens, **kwargs)


llama_tokenizer = partial(
    _bpe_tokenizer,
    "LlamaTokenizerFast",
    llama_vocab,
    LLAMA_TOKENS,
    add_bos_token=True,
    additional_special_tokens=_LLAMA_HEADERS,
    # HunyuanVideo crops the template from the front of the sequence: padding must be on the right.
    padding_side="right",
)
clip_tokenizer = partial(_bpe_tokenizer, "CLIPTokenizer", clip_vocab, CLIP_TOKENS)
gemma_tokenizer = partial(_bpe_tokenizer, "GemmaTokenizer", gemma_vocab, GEMMA_TOKENS, add_bos_token=True)
qwen_tokenizer = partial(
    _bpe_tokenizer, "Qwen2Tokenizer", qwen_vocab, QWEN_TOKENS, additional_special_tokens=_QWEN_HEADERS,
    chat_template=_CHATML,
)


def byt5_tokenizer():
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()
