"""Peak memory and time of the 3D Tiles export (``export.tiles.blocks.write_tiles``) on a generated city of 1, 4
and 16 blocks (16 blocks of 312 500 Gaussians: 5 M), SH degree 3, tiles of 32 768 Gaussians.

    python scripts/bench_tiles_memory.py [--blocks 1 4 16] [--per-block 312500] [--tile-size 32768] [--without-trim]

Each size runs in a fresh Python process (peak resident memory only grows within a process): it imports, notes
its resident memory (the baseline: Python, torch, numpy), then writes the tileset of the city of
``tests/helpers/standard_city.py`` (made block by block as the export asks for it) into a temporary folder,
removed afterwards. Reported per size:
the Gaussians, the tiles and levels written, their size on disk, the time spent making the blocks, the time of
the export itself (writing the GLBs included), wall-clock and CPU (all threads: on a shared machine the CPU time
moves less with the neighbours' load than the wall time), the CPU time per million Gaussians (flat when the time
is linear), the peak resident memory (``getrusage`` ru_maxrss,
which counts torch's and numpy's buffers alike) and that peak above the baseline. The first line names the CPU
and its ISA. ``--without-trim`` leaves out the export's trim of the C heap after each tile (see
``export.tiles.blocks._give_back_freed_memory``), to show what it saves.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from momentum_gs.export.tiles import blocks as tile_blocks  # noqa: E402
from momentum_gs.export.tiles.lod import TILE_SIZE  # noqa: E402
from momentum_gs.render.kernels import describe_cpu  # noqa: E402
from tests.helpers.standard_city import generated_city  # noqa: E402

PER_BLOCK = 312_500  # 16 blocks: 5 M Gaussians


def rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(blocks: int, per_block: int, tile_size: int, degree: int) -> dict:
    """Export the generated city of ``blocks`` blocks once, in this process; the figures of the module notes."""
    baseline = rss_mib()
    made = [0.0, 0.0]  # wall and CPU seconds spent making the blocks

    def timed_blocks():
        source = generated_city(blocks, per_block, degree=degree)
        while True:
            wall, cpu = time.perf_counter(), time.process_time()
            block = next(source, None)
            made[0] += time.perf_counter() - wall
            made[1] += time.process_time() - cpu
            if block is None:
                return
            yield block
            del block

    out = Path(tempfile.mkdtemp(prefix="bench_tiles_"))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        written = tile_blocks.write_tiles(timed_blocks(), out, tile_size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"blocks": blocks, "gaussians": written.gaussians, "tiles": written.tiles, "levels": written.levels,
            "disk_mib": written.tile_bytes / 2**20, "make_s": made[0], "export_s": wall - made[0],
            "export_cpu_s": cpu - made[1],
            "peak_mib": rss_mib(), "baseline_mib": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--per-block", type=int, default=PER_BLOCK)
    parser.add_argument("--tile-size", type=int, default=TILE_SIZE)
    parser.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3))
    parser.add_argument("--without-trim", action="store_true", help="no trim of the C heap after each tile")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one size, JSON on stdout
    args = parser.parse_args()
    if args.child:
        if args.without_trim:
            tile_blocks._give_back_freed_memory = lambda: None
        print(json.dumps(measure(args.blocks[0], args.per_block, args.tile_size, args.sh_degree)))
        return
    print(f"cpu: {describe_cpu()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"generated city, {args.per_block} Gaussians per block, SH degree {args.sh_degree}, tiles of at most "
          f"{args.tile_size}{', without the trim of the C heap' if args.without_trim else ''}\n")
    print("| blocks | Gaussians | tiles | levels | tiles on disk | making the blocks | export, wall | export, CPU | "
          "CPU per M Gaussians | peak RSS | above the baseline |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for blocks in args.blocks:
        command = [sys.executable, __file__, "--child", "--blocks", str(blocks), "--per-block", str(args.per_block),
                   "--tile-size", str(args.tile_size), "--sh-degree", str(args.sh_degree)] + \
            (["--without-trim"] if args.without_trim else [])
        r = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"| {r['blocks']} | {r['gaussians']:,} | {r['tiles']} | {r['levels']} | {r['disk_mib']:.0f} MiB | "
              f"{r['make_s']:.1f} s | {r['export_s']:.0f} s | {r['export_cpu_s']:.0f} s | "
              f"{r['export_cpu_s'] / r['gaussians'] * 1e6:.0f} s | "
              f"{r['peak_mib']:.0f} MiB | {r['peak_mib'] - r['baseline_mib']:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
