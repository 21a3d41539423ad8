"""Offline tokenizers for the LM proxy tasks: raw bytes, or a byte-level BPE trained on the corpus.

No tokenizer is downloaded. ``bytes`` maps every UTF-8 byte to its value (V = 257: 256 bytes and
the end-of-text id 256). ``bpe`` trains a byte-level BPE with the ``tokenizers`` library on the
*training* documents only (test text never shapes the vocabulary); its end-of-text token has id 0.
Both know how many bytes of text each id stands for (:attr:`Tokenizer.token_bytes`), so a loss in
nats per token converts to bits per byte, a figure that does not depend on the tokenizer.

A tokenizer is plain data (:meth:`Tokenizer.to_json` / :func:`tokenizer_from_json`): it travels
with a pretraining run's log and is rebuilt in another process without retraining.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EOT", "KINDS", "Tokenizer", "tokenizer_from_json", "train_tokenizer"]

EOT = "<|endoftext|>"
KINDS = ("bytes", "bpe")
_BYTE_VOCAB = 257  # 256 byte values and the end-of-text id


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - a dependency of aira-async
        raise ImportError(
            "the 'bpe' tokenizer needs the tokenizers package: pip install tokenizers"
        ) from None
    return tokenizers


@dataclass(frozen=True, eq=False)
class Tokenizer:
    """Text -> token ids. Immutable; safe to share between threads of one process.

    Attributes:
        kind: "bytes" or "bpe".
        vocab_size: V, ids are in [0, V).
        eot_id: the end-of-text id put between documents.
        token_bytes: bytes of text each id stands for (0 for end-of-text), length V.
        spec: the serialised BPE (``tokenizers`` JSON); empty for "bytes".
    """

    kind: str
    vocab_size: int
    eot_id: int
    token_bytes: tuple[int, ...]
    spec: str = ""
    _impl: Any = field(default=None, repr=False)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text (no end-of-text added)."""
        if self.kind == "bytes":
            return [list(text.encode("utf-8")) for text in texts]
        return [enc.ids for enc in self._impl.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; end-of-text ids are dropped."""
        if self.kind == "bytes":
            data = bytes(i for i in ids if i != self.eot_id)
            return data.decode("utf-8", errors="replace")
        return str(self._impl.decode(list(ids)))

    def to_json(self) -> str:
        """Everything needed to rebuild this tokenizer (see :func:`tokenizer_from_json`)."""
        return json.dumps({"kind": self.kind, "vocab_size": self.vocab_size, "spec": self.spec})


def _bytes_tokenizer() -> Tokenizer:
    return Tokenizer(
        kind="bytes", vocab_size=_BYTE_VOCAB, eot_id=256, token_bytes=(1,) * 256 + (0,)
    )


def _bpe_from_impl(impl: Any) -> Tokenizer:
    vocab_size = int(impl.get_vocab_size())
    eot_id = impl.token_to_id(EOT)
    assert eot_id is not None, "the BPE was trained without its end-of-text token"
    # Byte-level BPE writes each byte as one printable character, so a token's length in
    # characters is its length in bytes.
    token_bytes = tuple(
        0 if i == eot_id else len(impl.id_to_token(i) or "") for i in range(vocab_size)
    )
    return Tokenizer(
        kind="bpe",
        vocab_size=vocab_size,
        eot_id=int(eot_id),
        token_bytes=token_bytes,
        spec=impl.to_str(),
        _impl=impl,
    )


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int = 0) -> Tokenizer:
    """A tokenizer of ``kind``; "bpe" is trained on ``texts`` up to ``vocab_size`` ids.

    Args:
        kind: "bytes" (``texts`` and ``vocab_size`` are ignored) or "bpe".
        texts: the training documents (only read for "bpe").
        vocab_size: the BPE's largest vocabulary (at least 258); fewer ids when the corpus
            runs out of merges.

    Raises:
        ValueError: an unknown kind or a BPE vocabulary below 258.
        ImportError: "bpe" without the ``tokenizers`` package (names the install step).
    """
    if kind == "bytes":
        return _bytes_tokenizer()
    if kind != "bpe":
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {KINDS}")
    if vocab_size < _BYTE_VOCAB + 1:
        raise ValueError(f"a BPE vocabulary needs at least 258 ids, got {vocab_size}")
    tk = _tokenizers()
    impl = tk.Tokenizer(tk.models.BPE())
    impl.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    impl.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    impl.train_from_iterator(texts, trainer=trainer)
    return _bpe_from_impl(impl)


def tokenizer_from_json(text: str) -> Tokenizer:
    """Inverse of :meth:`Tokenizer.to_json`. Raises ValueError on a malformed payload."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise ValueError("not a serialised aira tokenizer")
    if data["kind"] == "bytes":
        return _bytes_tokenizer()
    return _bpe_from_impl(_tokenizers().Tokenizer.from_str(data["spec"]))
