"""Every file reader, fed random and mutated files, returns or says what is wrong in one line, within a memory
bound proportional to the file. A short, reproducible run (derandomized); ``scripts/fuzz_readers.py`` runs long."""

from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest

from momentum_gs.config import Config
from momentum_gs.errors import UserError
from momentum_gs.export.spz import HEADER, MAGIC
from tests.helpers.fuzz import MEMORY_CONSTANT, Reader, check_read, fuzz_reader
from tests.helpers.fuzz_registry import READERS

EXAMPLES = 40  # per reader: a few seconds each on one core


@pytest.mark.parametrize("reader", READERS, ids=[reader.name for reader in READERS])
def test_a_fuzzed_file_is_read_or_refused_in_one_line(reader, tmp_path):
    if reader.skip:
        pytest.skip(reader.skip)
    stats = fuzz_reader(reader, tmp_path, EXAMPLES)
    assert not stats.escapes, stats.escapes[-1]  # the last is Hypothesis's smallest example
    assert stats.examples >= EXAMPLES // 2 and stats.max_memory_ratio <= 1


@pytest.mark.parametrize("reader", READERS, ids=[reader.name for reader in READERS])
def test_every_reader_reads_its_own_valid_samples(reader, tmp_path):
    """Readers still to be hardened included: their entries are ready to be switched on."""
    for seed in range(3):
        reader.read(reader.sample(np.random.default_rng(seed)), tmp_path)


POINT = "1 0 0 0 1 2 3 0.5\n"
IMAGE = "1 1 0 0 0 0 0 0 1 a.jpg\n"
# Files the readers let escape (an exception other than UserError, a numpy warning, a message on two lines) or
# took for something else (an id past 32 bits, 1e300 pixels, a list as a bool), with what is said now (None: read).
BROKEN = [
    ("colmap points3D.txt", POINT + "99999999999999999999999 0 0 0 1 2 3 0.5\n", "ids from 0 to 2^64 - 1"),
    ("colmap points3D.txt", POINT + "2 0 0 0 " + "9" * 400 + " 2 3 0.5\n", "colours whole numbers"),
    ("colmap points3D.txt", POINT + "-1 0 0 0 1 2 3 0.5\n", "ids from 0"),
    ("colmap images.txt", IMAGE + "1 2 nan\n", "the id -1 or a point's"),
    ("colmap images.txt", IMAGE + "1 2 1e30\n", "the id -1 or a point's"),
    ("colmap images.txt", "99999999999 1 0 0 0 0 0 0 1 a.jpg\n\n", "IMAGE_ID QW"),
    ("colmap cameras.txt", "1 PINHOLE 4 4 1e300 1e300 2 2\n2 PINHOLE 4 4 1 1 2 2\n", "non-finite parameters"),
    ("config yaml", '{"a":' * 2000, "nests 2000 levels deep"),
    ("config yaml", "- " * 3000, "nests 3000 levels deep"),
    ("config yaml", "d: 2001-02-30\n", "not valid YAML: day is out of range"),
    ("config yaml", "render:\n  background: '[0, 0'\n", "'render.background' expects tuple"),
    ("config yaml", "seed: 0x" + "f" * 5000 + "\n", "got an integer of 20000 bits"),
    ("config yaml", "optim:\n  steps: " + "9" * 400 + "\n", "'optim.steps' must be in [1, 1000000000], got 9999"),
    ("config yaml", "__class__.seed: 3\n", "unknown config key '__class__.seed'"),
    ("config yaml", "log:\n  tensorboard: [1]\n", "'log.tensorboard' expects bool"),
    ("config yaml", "optim:\n  steps: true\n", "'optim.steps' expects int"),
    ("config yaml", '"a\\nb": 1\n', "config key 'a\\nb' is not a name"),  # a key with a newline in it
    ("checkpoint", "G@", "is not a zip archive as torch.save writes"),  # a pickled float cut short (torch's old layout)
    ("scene.json", '{"up": [0, 1e300, 1e300]}', "up[1] is 1e+300, expected a finite number in [-1, 1]"),
    ("georef.json", '{"origin": {"lat": 1, "lon": 2, "alt": 1' + "0" * 400 + "}}", "origin.alt is 1000"),
    ("image cache manifest", '["a.png"]', None),
    ("image cache manifest", "[" * 100000, None),
    ("image cache manifest", '{"a.png": {"x": 1}}', None),
    ("transforms.json", '{"w": 32, "h": 24, "fl_x": 9, "frames": [{"file_path": "block_1/' + "x" * 300 + '", '
     '"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]}]}', "1 image(s) listed"),  # a name too long
]


@pytest.mark.parametrize("name, text, said", BROKEN, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BROKEN)])
def test_files_that_broke_a_reader_are_refused_in_one_line(name, text, said, tmp_path):
    reader = next(r for r in READERS if r.name == name)
    reader.read(reader.sample(np.random.default_rng(0)), tmp_path)
    check_read(reader, text.encode(), tmp_path)
    if said is None:
        reader.read(text.encode(), tmp_path)
    else:
        with pytest.raises(UserError, match=re.escape(said)):
            reader.read(text.encode(), tmp_path)
    assert Config.seed == 0  # the class's own default is never set (a key __class__.seed did)


# The shapes that cost a reader the most memory per input byte (measured: PyYAML about 330 bytes per byte of
# empty lists, the text models about 20 per byte of short lines), large enough that the bound's constant is small.
LARGE = {
    "config yaml": ("a: [" + ",".join(["[]"] * 12000) + "]\n").encode(),
    "colmap cameras.txt": "".join(f"{i} PINHOLE 1 1 1 1 1 1\n" for i in range(1, 8000)).encode(),
    "colmap images.txt": ("1 1 0 0 0 0 0 0 1 a.jpg\n" + " ".join(["1 2 -1"] * 40000) + "\n").encode(),
    "colmap points3D.txt": "".join(f"{i} 0 0 0 1 2 3 0.5\n" for i in range(1, 12000)).encode(),
    "colmap points3D.bin": struct.pack("<Q", 4000) + b"".join(
        struct.pack("<Q3d3BdQQ", i + 1, 0, 0, 0, 1, 2, 3, 0.5, 1, 0) for i in range(4000)),
    "image cache manifest": ("{" + ",".join(f'"{i}":""' for i in range(40000)) + "}").encode(),
    # Zeros at SH degree 3: gzip near its 1032x expansion, the most Gaussians a header may count for the file's size.
    "spz": gzip.compress(HEADER.pack(MAGIC, 3, 200_000, 3, 12, 0, 0) + bytes(200_000 * 65), 9, mtime=0),
}


@pytest.mark.parametrize("name", list(LARGE))
def test_a_large_file_stays_within_the_memory_bound(name, tmp_path):
    reader = next(r for r in READERS if r.name == name)
    reader.read(reader.sample(np.random.default_rng(0)), tmp_path)  # imports and companion files first
    assert len(LARGE[name]) * reader.memory_factor > 2 * MEMORY_CONSTANT  # the input, not the constant, counts
    assert check_read(reader, LARGE[name], tmp_path) > 0.05


def test_the_check_tells_an_escape_from_a_one_line_error_and_bounds_memory(tmp_path):
    def fails_with(exc):
        def read(data, workdir):
            raise exc
        return Reader("probe", lambda rng: b"", read)

    check_read(fails_with(UserError("bad file")), b"x", tmp_path)
    for exc in (ValueError("no"), RecursionError(), UserError("two\nlines"), UserError("")):
        with pytest.raises(AssertionError):
            check_read(fails_with(exc), b"x", tmp_path)
    with pytest.raises(AssertionError, match="RuntimeWarning"):
        check_read(Reader("probe", lambda rng: b"", lambda data, workdir: np.log(np.zeros(1))), b"", tmp_path)
    hog = Reader("probe", lambda rng: b"", lambda data, workdir: bytearray(MEMORY_CONSTANT + 64 * len(data) + 1024),
                 memory_factor=64)
    with pytest.raises(AssertionError, match="past the bound"):
        check_read(hog, b"x" * 100, tmp_path)
    assert check_read(Reader("probe", lambda rng: b"", lambda data, workdir: None), b"x", tmp_path) < 0.01
