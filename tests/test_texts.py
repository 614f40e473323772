"""The texts stay true: docstrings and --help texts quote no measured figure (those live in docs/benchmarks/,
beside their command and machine), and every module path the docs name exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "momentum_gs"

# A measured figure: a score in dB, a PSNR, a time, a throughput, a speed-up, a size in bytes. Defaults,
# units in shapes ([N, 3]) and formulas (1.1 × the extent, 3 × float32) do not match.
NUMBER = r"(?<![\w.])\d+(?:[.,]\d+)?"
MEASURED = re.compile("|".join([
    NUMBER + r"\s?dB\b",  # a score
    r"\bPSNR\s+(?:of\s+)?\d",  # "PSNR 23.4"
    NUMBER + r"\s?(?:ms|s|min|minutes|seconds|hours)\b",  # a time
    NUMBER + r"\s?(?:steps/s|FPS|frames a second|steps a second)\b",  # a throughput
    NUMBER + r"\s?[×x](?:\s+(?:faster|slower|quicker|as fast|as long|as slow)\b|\s*[,;)])",  # a speed-up: 3× faster
    NUMBER + r"\s?% (?:faster|slower|smaller|larger)\b",  # a change: 3 % smaller
    NUMBER + r"\s?% of (?:a |the |its )?(?:[\w-]+ ){0,3}(?:step|run|time)\b",  # a share: 40 % of a CPU step
    NUMBER + r"\s?(?:KB|kB|MB|GB)\b",  # a size
]))

# Phrases that match the patterns above but quote no measurement of this project, each with its reason.
NOT_MEASURED = {
    "for up to 30 s": "glog's own buffering setting, not a measurement",
    '"render: 2.10 s a frame here: about 3.2 min for 90 frames': "an example of the line estimate_line prints",
    "528 MB": "the size of torchvision's published VGG16 file, which the user fetches",
    "7 KB": "the size of the lpips package's published weight file",
}

# Files whose figures are still to be moved to docs/benchmarks/ (none: keep it that way).
PENDING: tuple[str, ...] = ()


def _texts(tree: ast.Module):
    """(line, text) of every docstring and of every help, description and epilog string of a module."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield node.body[0].lineno, doc
        elif isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in ("help", "description", "epilog"):
                    parts = [n.value for n in ast.walk(keyword.value)
                             if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                    yield keyword.value.lineno, "".join(parts)


def measured_figures(text: str) -> list[str]:
    """The measured figures ``text`` quotes, each with a little of its context."""
    for phrase in NOT_MEASURED:
        text = text.replace(phrase, "")
    return [text[max(0, m.start() - 30):m.end() + 10].replace("\n", " ") for m in MEASURED.finditer(text)]


def test_the_pattern_finds_measured_figures_and_leaves_defaults_alone():
    for quoted in ("held-out PSNR 23.36 dB", "trained 1.6× faster", "(the demo city 1.6×, brighton_beach",
                   "took 29 s of CPU a photo", "at 1600 peaked at 1.2 GB", "render at 42 FPS", "about 55 ms a view",
                   "3x faster than before", "ran at 17.9 steps/s", "made the file 3% smaller",
                   "it costs about 40 % of a CPU student step", "took 10× as long"):
        assert measured_figures(quoted), quoted
    for plain in ("[N, 3] world units", "1.1 × the largest distance", "3 × float32, world units", "SSIM in dB",
                  "at least 8×8.", "(default 500, cut to --refine-budget)", "a 2×2 max pool", "11×11 window",
                  "frames a second taken from --video (default 2)", "the first 5 views", "padded by 5 %",
                  "taking 10 % of a block's views away"):
        assert not measured_figures(plain), plain


def test_docstrings_and_help_texts_quote_no_measured_figure():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith(PENDING):
            continue
        for line, text in _texts(ast.parse(path.read_text(encoding="utf-8"))):
            found += [f"{name}:{line}: ...{figure}..." for figure in measured_figures(text)]
    assert not found, ("measured figures belong in docs/benchmarks/ (say where instead):\n" + "\n".join(found))


# Paths that other work is moving right now; the docs that name them follow the move.
MOVING: tuple[str, ...] = ()
# Decision records keep the paths of their time.
DOCS = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").rglob("*.md") if "decisions" not in p.parts)
MODULE_PATH = re.compile(r"momentum_gs/[\w/.-]*?(?:\.py\b|/(?![\w.]))")


def test_every_module_path_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        for match in MODULE_PATH.finditer(doc.read_text(encoding="utf-8")):
            path = match.group(0)
            if not path.startswith(MOVING) and not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert len(DOCS) > 5 and not missing, "\n".join(missing)
