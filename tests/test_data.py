"""The built-in data set: download, checksums, tokenisation, and errors that say what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dreamteam.errors import DataError
from dreamteam.tasks.data import SHA256, load_tokenizer, prepare_data, resolve_data, sha256_file


def test_mirror_resolves_and_val_bytes_match_its_readme(mirror: Path) -> None:
    paths = resolve_data(mirror=mirror)
    assert paths.val_bytes() == 111_540
    assert len(np.fromfile(paths.val, dtype=np.uint16)) == 36_059


def test_prepare_from_a_download_reproduces_the_published_bins(
    tmp_path: Path, mirror: Path
) -> None:
    fetched = []

    def fake_download(url: str, dest: Path) -> None:  # the network, replaced by the mirror
        fetched.append(url)
        shutil.copyfile(mirror / "shakespeare" / "input.txt", dest)

    # the tokenizer ranks come from the cache, as after a first online run
    (tmp_path / "data" / "tokenizers").mkdir(parents=True)
    shutil.copyfile(
        mirror / "tokenizers" / "gpt2.tiktoken", tmp_path / "data" / "tokenizers" / "gpt2.tiktoken"
    )
    paths = prepare_data(tmp_path, download=fake_download)
    assert fetched and fetched[0].endswith("tinyshakespeare/input.txt")
    assert sha256_file(paths.train) == SHA256["shakespeare/train.bin"]
    assert sha256_file(paths.val) == SHA256["shakespeare/val.bin"]


def test_corrupt_download_is_refused(tmp_path: Path) -> None:
    def bad_download(url: str, dest: Path) -> None:
        dest.write_text("not shakespeare")

    with pytest.raises(DataError, match="wrong sha256"):
        prepare_data(tmp_path, download=bad_download)


def test_missing_data_names_the_command_that_fixes_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dreamteam data prepare"):
        resolve_data(home=tmp_path)


def test_corrupt_cache_is_detected(tmp_path: Path, mirror: Path) -> None:
    paths = prepare_data(tmp_path, mirror=mirror)
    with paths.val.open("r+b") as f:
        f.write(b"\x00\x00")
    with pytest.raises(DataError, match=r"sha256 mismatch.*dreamteam data prepare"):
        resolve_data(home=tmp_path)


def test_offline_tokenizer_matches_the_bins(mirror: Path) -> None:
    enc = load_tokenizer(mirror=mirror)
    text = (mirror / "shakespeare" / "input.txt").read_text(encoding="utf-8")
    val = np.fromfile(mirror / "shakespeare" / "val.bin", dtype=np.uint16)
    assert enc.encode_ordinary(text[int(len(text) * 0.9) :])[:500] == val[:500].tolist()
