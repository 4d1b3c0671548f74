"""The built-in data set: tiny Shakespeare in GPT-2 BPE tokens, downloaded once and checked.

Layout of a data directory (the cache, or a mirror such as ../shared/data):
``shakespeare/{input.txt,train.bin,val.bin}`` and ``tokenizers/gpt2.tiktoken``.
The bins are the first 90 % / last 10 % of input.txt by characters, encoded with
``encode_ordinary`` and stored as little-endian uint16.

A user task's data (``resolve_task_data``) is a directory holding its ``[data] train`` files,
which every candidate gets, and its ``eval`` files, which only the harness reads: the task
directory itself (``source = "files"``), or a cache under DREAMTEAM_HOME that the task's
harness file fills once (``source = "prepare"``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamteam.errors import DataError, TaskError
from dreamteam.tasks import Task
from dreamteam.tasks.metric import load_metric

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
SHA256 = {
    "shakespeare/input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "shakespeare/train.bin": "502a2bdc8210d1ac5d5674867cb74467dd31db575d25cf6dbb08c8bdbea8680f",
    "shakespeare/val.bin": "68a53422394c26a655ebe641f5c6f49888e8f4e45fe5d6f02abda63ba3ebd65b",
    "tokenizers/gpt2.tiktoken": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
}
TRAIN_FRACTION = 0.9
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT_TOKEN = 50256
_FIX = "run `dreamteam data prepare`"


@dataclass(frozen=True)
class DataPaths:
    """Where a task's prepared data is: the built-in set's layout, or a user task's files."""

    root: Path
    train_names: tuple[str, ...] = ()  # a user task: its training files, relative to root

    def candidate_files(self) -> list[tuple[Path, str]]:
        """(file, name in the candidate's data dir) for each file a candidate trains on."""
        if self.train_names:
            return [(self.root / name, name) for name in self.train_names]
        return [(self.train, "train.bin")]

    @property
    def text(self) -> Path:
        return self.root / "shakespeare" / "input.txt"

    @property
    def train(self) -> Path:
        return self.root / "shakespeare" / "train.bin"

    @property
    def val(self) -> Path:
        return self.root / "shakespeare" / "val.bin"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizers" / "gpt2.tiktoken"

    def val_bytes(self) -> int:
        """UTF-8 bytes of the validation text, to turn nats per token into bits per byte."""
        return _val_bytes(self.text)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _val_bytes(text_file: Path) -> int:
    # read once per process: every trial of a run needs it
    text = text_file.read_text(encoding="utf-8")
    return len(text[_split_index(text) :].encode("utf-8"))


def _split_index(text: str) -> int:
    return int(len(text) * TRAIN_FRACTION)


def _verify(root: Path, names: tuple[str, ...]) -> None:
    for name in names:
        path = root / name
        if not path.is_file():
            raise DataError(f"missing data file {path}: {_FIX}")
        if sha256_file(path) != SHA256[name]:
            raise DataError(f"corrupt data file {path} (sha256 mismatch): {_FIX} --force")


def resolve_data(home: Path | None = None, mirror: Path | str | None = None) -> DataPaths:
    """The verified data directory: the mirror when one is given, else the prepared cache."""
    root = Path(mirror) if mirror else _cache_root(home)
    _verify(root, ("shakespeare/input.txt", "shakespeare/train.bin", "shakespeare/val.bin"))
    return DataPaths(root)


def _cache_root(home: Path | None) -> Path:
    if home is None:
        raise DataError(f"no data directory configured: {_FIX}")
    return Path(home) / "data"


def load_tokenizer(home: Path | None = None, mirror: Path | str | None = None):
    """The GPT-2 encoding: from local ranks when present (offline), else tiktoken's download."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    roots = ([Path(mirror)] if mirror else []) + ([_cache_root(home)] if home else [])
    for root in roots:
        ranks_file = root / "tokenizers" / "gpt2.tiktoken"
        if ranks_file.is_file():
            ranks = load_tiktoken_bpe(str(ranks_file))
            return tiktoken.Encoding(
                name="gpt2",
                pat_str=GPT2_PATTERN,
                mergeable_ranks=ranks,
                special_tokens={"<|endoftext|>": EOT_TOKEN},
            )
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as exc:  # tiktoken raises several network error types
        raise DataError(f"cannot load the GPT-2 tokenizer ({exc}): {_FIX}") from exc


def _download(url: str, dest: Path) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
            response.raise_for_status()
            with dest.open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
    except httpx.HTTPError as exc:
        raise DataError(
            f"cannot download {url} ({exc}); on an offline machine set "
            "DREAMTEAM_DATA_MIRROR to a directory holding shakespeare/input.txt"
        ) from exc


def prepare_data(
    home: Path,
    mirror: Path | str | None = None,
    force: bool = False,
    download: Callable[[str, Path], None] = _download,
) -> DataPaths:
    """Download (or copy from the mirror), check, tokenise and cache the built-in data set."""
    root = _cache_root(home)
    if not force:
        try:
            return resolve_data(home=home)
        except DataError:
            pass
    (root / "shakespeare").mkdir(parents=True, exist_ok=True)
    (root / "tokenizers").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        staged = Path(tmp) / "input.txt"
        if mirror:
            shutil.copyfile(Path(mirror) / "shakespeare" / "input.txt", staged)
            ranks = Path(mirror) / "tokenizers" / "gpt2.tiktoken"
            if ranks.is_file():
                shutil.copyfile(ranks, root / "tokenizers" / "gpt2.tiktoken")
        else:
            download(SHAKESPEARE_URL, staged)
        if sha256_file(staged) != SHA256["shakespeare/input.txt"]:
            raise DataError(f"downloaded input.txt has the wrong sha256; {_FIX} again later")
        os.replace(staged, root / "shakespeare" / "input.txt")
    _tokenise(root, load_tokenizer(home=home, mirror=mirror))
    return resolve_data(home=home)


def _tokenise(root: Path, encoding) -> None:
    text = (root / "shakespeare" / "input.txt").read_text(encoding="utf-8")
    cut = _split_index(text)
    for name, part in (("train.bin", text[:cut]), ("val.bin", text[cut:])):
        ids = np.array(encoding.encode_ordinary(part), dtype="<u2")
        tmp = root / "shakespeare" / f".{name}.tmp"
        ids.tofile(tmp)
        os.replace(tmp, root / "shakespeare" / name)


def resolve_task_data(task: Task, home: Path, mirror: Path | None = None) -> DataPaths:
    """A task's data, ready: the built-in set (mirror or cache), or a user task's files."""
    if task.data.source == "shakespeare":
        return resolve_data(mirror=mirror) if mirror else prepare_data(home)
    if task.data.source == "files":
        root = task.root
    else:
        root = _prepared(task, Path(home) / "data" / "tasks")
    for name in (*task.data.train, *task.data.eval):
        if not (root / name).is_file():
            raise TaskError(
                f"{task.root / 'task.toml'}: [data] names {name!r}, which is missing from {root}"
            )
    return DataPaths(root, task.data.train)


def _prepared(task: Task, cache: Path) -> Path:
    """The directory the task's prepare() filled: made once per task version and home.

    The key is the harness file and the [data] table, so editing either prepares afresh.
    Without a fixed seed the data is drawn from a secret seed, which is not kept: the
    evaluation split cannot be rebuilt even by someone who knows the generator.
    """
    metric = load_metric(task)
    assert metric.prepare is not None  # load_metric requires it for source = "prepare"
    digest = hashlib.sha256(metric.path.read_bytes() + repr(task.data).encode()).hexdigest()
    final = cache / f"{task.name}-{digest[:16]}"
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{task.name}-"))
    seed = task.data.seed if task.data.seed is not None else secrets.randbits(31)
    try:
        metric.prepare(staging, seed)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        text = str(exc).strip().splitlines()
        raise TaskError(
            f"{metric.path}: prepare() failed: {type(exc).__name__}: {text[0] if text else ''}"
        ) from exc
    try:
        os.rename(staging, final)  # atomic: a concurrent prepare either wins or finds it done
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not final.is_dir():
            raise
    return final
