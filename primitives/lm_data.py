"""Text corpora for the LM proxy tasks: read documents, train a tokenizer, pack token rows.

Sources (:func:`parse_source`; the caller says where the data live, this module reads no
environment):

- ``hf:ID`` or ``hf:ID:CONFIG``: a Hugging Face dataset read with ``datasets.load_dataset(...,
  streaming=True)`` (optional extra ``pip install 'aira-async[lm]'``), e.g.
  ``hf:mlfoundations/dclm-baseline-1.0``. Its ``train`` split is train; ``test`` or
  ``validation``, when the dataset has one, is test.
- a directory: files named ``train*`` are train and ``test*`` / ``valid*`` / ``validation*``
  are test, each ``.jsonl``, ``.json`` (JSON lines), ``.txt`` or ``.parquet`` (needs pyarrow),
  read in name order. A directory without split names is one train split, as is a single file.
- In ``.jsonl`` every line is a JSON string or an object whose text is under ``text_field``
  (default: the first of "text", "story", "content"); BabiStories ships one JSON story a line.
  In ``.txt`` documents are separated by blank lines. Parquet reads the text column.

Rows. Documents are tokenized in order, each followed by the end-of-text id, and concatenated;
row i is the window ``stream[i·T : i·T + T + 1]`` (T = ``seq_len``): inputs are its first T
tokens and targets its last T. A "sample" of the paper is read here as one such row (BabiStories'
~475M GPT-2 train tokens / 927,158 train samples ≈ 512 tokens a sample). A corpus shorter than
asked gives fewer rows; :class:`Corpus` says how many it holds.

Held-out text. The tokenizer is trained on train documents only. A single-split source keeps
its first documents for test: the shortest prefix of documents holding at least
``_TEST_BYTES_PER_TOKEN`` bytes per test token (more than a byte-level BPE token averages),
which is decided before any tokenizer exists; those documents never reach train, even when
packing uses only part of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from primitives.tokenizer import Tokenizer, train_tokenizer

__all__ = [
    "DATA_SUFFIXES",
    "Corpus",
    "DataSource",
    "iter_documents",
    "load_corpus",
    "pack_rows",
    "parse_source",
]

DATA_SUFFIXES = (".jsonl", ".json", ".txt", ".parquet")
TEXT_FIELDS = ("text", "story", "content")
_TEST_PREFIXES = ("test", "valid", "validation")
_TEST_BYTES_PER_TOKEN = 8
_ENCODE_BATCH = 512  # documents tokenized per call


@dataclass(frozen=True, kw_only=True)
class DataSource:
    """Where a corpus lives. ``kind`` is "hf" or "files"; see :func:`parse_source`."""

    kind: str
    spec: str
    hf_id: str = ""
    hf_config: str | None = None
    train_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    text_field: str | None = None


def parse_source(data: str, *, text_field: str | None = None) -> DataSource:
    """Resolve a data setting (``hf:ID[:CONFIG]``, a directory or a file).

    Raises:
        ValueError: an empty setting, a missing path, or a directory without data files.
    """
    if not data:
        raise ValueError("data: empty; give hf:DATASET_ID, a directory or a file")
    if data.startswith("hf:"):
        hf_id, _, config = data[3:].partition(":")
        if not hf_id:
            raise ValueError(f"data {data!r}: no dataset id after 'hf:'")
        return DataSource(
            kind="hf", spec=data, hf_id=hf_id, hf_config=config or None, text_field=text_field
        )
    path = Path(data)
    if path.is_file():
        _check_suffix(path)
        return DataSource(kind="files", spec=data, train_files=(str(path),), text_field=text_field)
    if not path.is_dir():
        raise ValueError(f"data {data!r}: no such file or directory")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in DATA_SUFFIXES)
    train = [str(p) for p in files if p.name.startswith("train")]
    test = [str(p) for p in files if p.name.startswith(_TEST_PREFIXES)]
    if not train:
        train = [str(p) for p in files if str(p) not in test]
    if not train:
        raise ValueError(f"data {data!r}: no train files ({', '.join(DATA_SUFFIXES)})")
    return DataSource(
        kind="files",
        spec=data,
        train_files=tuple(train),
        test_files=tuple(test),
        text_field=text_field,
    )


def _check_suffix(path: Path) -> None:
    if path.suffix not in DATA_SUFFIXES:
        raise ValueError(f"data file {path}: expected one of {', '.join(DATA_SUFFIXES)}")


def _text_of(record: Any, text_field: str | None, where: str) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        names = (text_field,) if text_field else TEXT_FIELDS
        for name in names:
            value = record.get(name)
            if isinstance(value, str):
                return value
    raise ValueError(f"{where}: no text field {text_field or TEXT_FIELDS} in a record")


def _read_jsonl(path: Path, text_field: str | None) -> Iterator[str]:
    with path.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, start=1):
            if line.strip():
                yield _text_of(json.loads(line), text_field, f"{path}:{n}")


def _read_txt(path: Path) -> Iterator[str]:
    block: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for line in chain(lines, [""]):
            if line.strip():
                block.append(line.rstrip("\n"))
            elif block:
                yield "\n".join(block)
                block = []


def _read_parquet(path: Path, text_field: str | None) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"reading {path} needs pyarrow: pip install 'aira-async[lm]' (or pyarrow)"
        ) from None
    table = pq.ParquetFile(path)
    names = table.schema_arrow.names
    column = text_field or next((n for n in TEXT_FIELDS if n in names), None)
    if column is None or column not in names:
        raise ValueError(f"{path}: no text column {text_field or TEXT_FIELDS} in {names}")
    for batch in table.iter_batches(columns=[column]):
        yield from (str(v) for v in batch.column(0).to_pylist() if v is not None)


def _hf_splits(source: DataSource) -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"data {source.spec!r} needs Hugging Face datasets: pip install 'aira-async[lm]'"
        ) from None
    return datasets.load_dataset(source.hf_id, source.hf_config, streaming=True)


def _hf_split_name(splits: Any, split: str) -> str | None:
    names = ("train",) if split == "train" else ("test", "validation")
    return next((name for name in names if name in splits), None)


def _read_hf(source: DataSource, split: str) -> Iterator[str]:
    splits = _hf_splits(source)
    name = _hf_split_name(splits, split)
    if name is None:
        return
    for n, record in enumerate(splits[name]):
        yield _text_of(record, source.text_field, f"{source.spec}[{name}][{n}]")


def iter_documents(source: DataSource, split: str) -> Iterator[str]:
    """The documents of ``split`` ("train" or "test") in order; test may be empty."""
    if source.kind == "hf":
        yield from _read_hf(source, split)
        return
    for name in source.train_files if split == "train" else source.test_files:
        path = Path(name)
        if path.suffix == ".txt":
            yield from _read_txt(path)
        elif path.suffix == ".parquet":
            yield from _read_parquet(path, source.text_field)
        else:
            yield from _read_jsonl(path, source.text_field)


def pack_rows(docs: Iterable[str], tokenizer: Tokenizer, seq_len: int, n_rows: int) -> Tensor:
    """Up to ``n_rows`` rows of ``seq_len + 1`` tokens (module docstring), int32 (n, T+1)."""
    if seq_len < 1 or n_rows < 0:
        raise ValueError(f"need seq_len >= 1 and n_rows >= 0, got {seq_len}, {n_rows}")
    needed = n_rows * seq_len + 1
    stream: list[int] = []
    it = iter(docs)
    while len(stream) < needed:
        batch = list(islice(it, _ENCODE_BATCH))
        if not batch:
            break
        for ids in tokenizer.encode_batch(batch):
            stream.extend(ids)
            stream.append(tokenizer.eot_id)
    n = min(n_rows, max(0, (len(stream) - 1) // seq_len))
    flat = torch.tensor(stream[: n * seq_len + 1], dtype=torch.int32)  # (n·T + 1,)
    if n == 0:
        return torch.zeros(0, seq_len + 1, dtype=torch.int32)
    return flat.unfold(0, seq_len + 1, seq_len).contiguous()  # (n, T+1), windows of stride T


@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus. Rows are int32 (n, T+1) on the CPU.

    Attributes:
        tokenizer: the tokenizer (trained on train documents only).
        train: train rows. test: test rows.
        seq_len: T.
        source: the data setting it came from.
    """

    tokenizer: Tokenizer
    train: Tensor
    test: Tensor
    seq_len: int
    source: str


def _split_prefix(docs: Iterator[str], n_bytes: int) -> list[str]:
    """The shortest prefix of ``docs`` holding at least ``n_bytes`` UTF-8 bytes."""
    prefix: list[str] = []
    total = 0
    while total < n_bytes:
        doc = next(docs, None)
        if doc is None:
            break
        prefix.append(doc)
        total += len(doc.encode("utf-8"))
    return prefix


def load_corpus(
    source: DataSource,
    *,
    seq_len: int,
    n_train: int,
    n_test: int,
    tokenizer: str = "bpe",
    vocab_size: int = 0,
    tokenizer_docs: int = 100_000,
) -> Corpus:
    """Read, tokenize and pack a corpus.

    Args:
        source: from :func:`parse_source`.
        seq_len: T, tokens a row predicts.
        n_train, n_test: rows wanted (fewer when the text runs out).
        tokenizer, vocab_size: :func:`primitives.tokenizer.train_tokenizer` settings.
        tokenizer_docs: a BPE is trained on at most this many (train) documents.

    Raises:
        ValueError / ImportError: as :func:`parse_source` and the readers.
    """
    if source.kind == "hf":
        separate_test = _hf_split_name(_hf_splits(source), "test") is not None
    else:
        separate_test = bool(source.test_files)
    held_out: list[str] = []
    if not separate_test:
        n_bytes = n_test * (seq_len + 1) * _TEST_BYTES_PER_TOKEN
        held_out = _split_prefix(iter_documents(source, "train"), n_bytes)

    def train_docs() -> Iterator[str]:
        return islice(iter_documents(source, "train"), len(held_out), None)

    tok = train_tokenizer(tokenizer, islice(train_docs(), tokenizer_docs), vocab_size)
    test_docs: Iterable[str] = held_out if held_out else iter_documents(source, "test")
    test = pack_rows(test_docs, tok, seq_len, n_test)
    train = pack_rows(train_docs(), tok, seq_len, n_train)
    return Corpus(tokenizer=tok, train=train, test=test, seq_len=seq_len, source=source.spec)
