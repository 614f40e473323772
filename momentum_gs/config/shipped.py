"""The config files shipped inside the package (``momentum_gs/configs/``), and ``--config`` read as a path
or as one of their names."""

from __future__ import annotations

from pathlib import Path

from momentum_gs.errors import UserError

SHIPPED = Path(__file__).resolve().parents[1] / "configs"  # package data: a wheel holds it as a checkout does
SUFFIXES = (".yaml", ".yml")


def shipped_names() -> list[str]:
    """The names of the shipped configs, as ``--config`` takes them: ``demo``, ``ablation/f_full8``, ..."""
    files = [path for path in SHIPPED.rglob("*") if path.suffix in SUFFIXES and path.is_file()]
    return sorted((path.relative_to(SHIPPED).with_suffix("").as_posix() for path in files),
                  key=lambda name: (name.count("/"), name))


def shipped_config(name: str) -> Path | None:
    """The shipped config ``name`` (``brighton_beach``, ``demo.yaml``, ``datasets/rubble``), or None."""
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return None  # a name stays inside the shipped folder
    for candidate in (SHIPPED / name, *(SHIPPED / f"{name}{suffix}" for suffix in SUFFIXES)):
        if candidate.suffix in SUFFIXES and candidate.is_file():
            return candidate
    return None


def find_config(config: str | Path) -> Path:
    """The file ``--config`` means: a path that exists (a path wins over a name), else the shipped config of
    that name; a one-line UserError listing the shipped names when it is neither."""
    path = Path(config)
    if path.exists():
        return path
    shipped = shipped_config(str(config))
    if shipped is None:
        names = ", ".join(shipped_names()) or f"none in {SHIPPED}"
        raise UserError(f"config file not found: {config} (neither a file nor a shipped config: {names})")
    return shipped
