"""End to end on the tiny synthetic city: train, resume, evaluate, export."""

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from momentum_gs.data.scene import load_scene
from momentum_gs.eval.evaluate import evaluate_run
from momentum_gs.export.scaffold import export_scene, load_export
from momentum_gs.losses import psnr
from momentum_gs.model.gaussian_scene import render_view
from momentum_gs.render.output import RenderOutput
from momentum_gs.train.block_step import on_random_background
from momentum_gs.train.run import train
from momentum_gs.train.trainer import Trainer
from momentum_gs.trained import load_run, merge_checkpoint
from tests.helpers.lpips_weights import fake_backbone, fake_heads


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every block's anchors and Adam moments, and the decoder, by name."""
    state = trainer.state()
    out = {f"decoder.{k}": v for k, v in state["decoder"].items()}
    for b, block in enumerate(state["blocks"]):
        out.update({f"block{b}.{k}": v for k, v in block["anchors"].items() if torch.is_tensor(v)})
        for i, moments in block["optimizer"]["state"].items():
            out.update({f"block{b}.adam{i}.{k}": v for k, v in moments.items() if torch.is_tensor(v)})
    return out


def _model(trainer: Trainer):
    return merge_checkpoint(trainer.state(), trainer.cfg, torch.device("cpu"))


def _train_view_psnr(trainer: Trainer) -> float:
    model = _model(trainer)
    with torch.no_grad():
        values = [float(psnr(model.render(cam, trainer.cfg.render, cam.uid).output.image.clamp(0, 1),
                             trainer.loader[i]))
                  for i, cam in enumerate(trainer.scene.train)]
    return sum(values) / len(values)


@pytest.mark.slow
def test_training_improves_and_writes_a_run(tiny_config):
    trainer = Trainer(tiny_config, load_scene(tiny_config.data), Path(tiny_config.out), torch.device("cpu"))
    before = _train_view_psnr(trainer)
    summary = trainer.train()
    after = _train_view_psnr(trainer)
    assert after > before + 1.0, (before, after)
    log = [json.loads(line) for line in open(f"{tiny_config.out}/train.log")]
    assert [r["step"] for r in log] == list(range(1, 25)) and summary["steps"] == 24
    assert sum(r["loss"] for r in log[-4:]) < sum(r["loss"] for r in log[:4])
    cfg, model, step = load_run(tiny_config.out)
    assert step == 24 and model.num_anchors == summary["num_anchors"] == trainer.num_anchors()
    assert cfg == tiny_config


@pytest.mark.slow
def test_resume_ends_where_an_uninterrupted_run_ends(tiny_config, tmp_path):
    scene = load_scene(tiny_config.data)
    straight = Trainer(tiny_config, scene, tmp_path / "straight", torch.device("cpu"))
    straight.train()

    tiny_config.log.checkpoint_every = 12
    killed = Trainer(tiny_config, scene, tmp_path / "resumed", torch.device("cpu"))
    killed.train(until=14)  # dies two steps after the checkpoint at step 12
    resumed = Trainer(tiny_config, scene, tmp_path / "resumed", torch.device("cpu"))
    assert resumed.resume() and resumed.step == 12
    resumed.train()

    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    assert straight.num_anchors() == resumed.num_anchors()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_eval_and_export_round_trip(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))  # no LPIPS weights anywhere
    train(tiny_config)
    results = evaluate_run(tiny_config.out)
    on_disk = json.loads(open(f"{tiny_config.out}/eval/results.json").read())
    assert on_disk == results
    for key in ("psnr", "ssim", "num_test_views", "num_anchors", "num_gaussians", "seconds_per_view", "storage_mb"):
        assert results[key] is not None, key
    assert results["lpips"] is None and "vgg16-397923af.pth" in results["lpips_note"]
    from momentum_gs.eval.evaluate import summary_lines

    assert any("vgg16-397923af.pth" in line for line in summary_lines(results, tiny_config.out))
    again = evaluate_run(tiny_config.out, save_images=False)  # the whole hint once per run, then a short line
    assert [line for line in summary_lines(again, tiny_config.out) if line.startswith("LPIPS")] == \
        ["LPIPS not computed: its weights are still missing (lpips_note in eval/results.json)"]
    assert results["num_test_views"] == 2 and "psnr_cc" not in results
    assert 5.0 < results["psnr"] < 60.0 and 0.0 < results["ssim"] <= 1.0
    assert len(list((tmp_path / "run" / "eval" / "renders").glob("*.png"))) == 2
    strip = cv2.imread(str(tmp_path / "run" / "eval" / "strip.png"))
    camera = load_scene(tiny_config.data).test[0]
    scale = -(-200 // camera.width)  # enlarged to at least 200 px per column, a 34-px header with name and PSNR
    assert strip.shape == (34 + 2 * camera.height * scale, 2 * (camera.width * scale + 2), 3)
    per_view = json.loads(open(f"{tiny_config.out}/eval/per_view.json").read())
    render = cv2.cvtColor(strip[34:34 + camera.height * scale:scale, :camera.width * scale:scale], cv2.COLOR_BGR2RGB)
    saved = cv2.cvtColor(cv2.imread(str(tmp_path / "run" / "eval" / "renders" /
                                        f"{Path(per_view[0]['name']).stem}.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(render, saved[:, :camera.width])  # the first column is the first view's render
    assert strip[:34].max() > 0 and strip[:34, :, :].mean() < 128  # white text on black: the header is written

    cfg, model, _ = load_run(tiny_config.out)
    export_scene(model, cfg.model, tmp_path / "export")
    loaded, loaded_cfg = load_export(tmp_path / "export")
    camera = load_scene(cfg.data).test[0]
    with torch.no_grad():
        before = model.render(camera, cfg.render).output.image
        after = loaded.render(camera, cfg.render).output.image
    assert loaded_cfg == cfg.model
    torch.testing.assert_close(before, after, rtol=0, atol=1e-6)
    _assert_scaffold_ply_layout(tmp_path / "export" / "point_cloud.ply", model.anchors)


def _assert_scaffold_ply_layout(path: Path, anchors) -> None:
    """The Scaffold-GS anchor PLY: its columns in its order, float32, one vertex per anchor, offsets [N, 3, k]."""
    from plyfile import PlyData

    vertex = PlyData.read(str(path))["vertex"]
    n, k, c = anchors.num_anchors, anchors.n_offsets, anchors.feat_dim
    names = (["x", "y", "z", "nx", "ny", "nz"] + [f"f_offset_{i}" for i in range(3 * k)]
             + [f"f_anchor_feat_{i}" for i in range(c)] + ["opacity"] + [f"scale_{i}" for i in range(6)]
             + [f"rot_{i}" for i in range(4)])
    assert list(vertex.data.dtype.names) == names and len(vertex.data) == n
    assert all(vertex.data.dtype[name] == np.dtype("<f4") for name in names)
    column = lambda prefix, count: np.stack([vertex[f"{prefix}{i}"] for i in range(count)], 1)  # noqa: E731
    np.testing.assert_array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), anchors.positions.numpy())
    offsets = anchors.offsets.detach().numpy()  # [N, k, 3]; f_offset_{3-axis j, child i} = j * k + i
    np.testing.assert_array_equal(column("f_offset_", 3 * k).reshape(n, 3, k), offsets.transpose(0, 2, 1))
    np.testing.assert_array_equal(column("f_anchor_feat_", c), anchors.features.detach().numpy())
    np.testing.assert_array_equal(column("scale_", 6), anchors.scalings.detach().numpy())
    np.testing.assert_allclose(vertex["opacity"], np.log(0.1 / 0.9), rtol=1e-6)
    np.testing.assert_array_equal(column("rot_", 4), np.tile([[1, 0, 0, 0]], (n, 1)))
    assert not np.stack([vertex["nx"], vertex["ny"], vertex["nz"]]).any()


@pytest.mark.slow
def test_eval_reports_lpips_and_colour_corrected_scores(tiny_config, tmp_path):
    from momentum_gs.eval.lpips import PAPER_CONVENTION

    torch.save(fake_backbone(), tmp_path / "vgg16.pth")
    torch.save(fake_heads(), tmp_path / "heads.pth")
    tiny_config.optim.steps = 6
    train(tiny_config)
    metrics = {"lpips_backbone": str(tmp_path / "vgg16.pth"), "lpips_heads": str(tmp_path / "heads.pth"),
               "colour_correction": True}
    results = evaluate_run(tiny_config.out, save_images=False, metrics=metrics)
    assert results["lpips"] > 0 and results["lpips_cc"] > 0 and results["lpips_convention"] == PAPER_CONVENTION
    assert results["psnr_cc"] >= results["psnr"] - 1e-3  # a least-squares colour map cannot do worse
    per_view = json.loads(open(f"{tiny_config.out}/eval/per_view.json").read())
    assert all(v["lpips"] is not None and "ssim_cc" in v for v in per_view)


@pytest.mark.parametrize("offload", ["memory", "disk"])
@pytest.mark.slow
def test_block_run_resumes_exactly(block_config, tmp_path, offload):
    block_config.blocks.offload = offload
    scene = load_scene(block_config.data)
    straight = Trainer(block_config, scene, tmp_path / "straight", torch.device("cpu"))
    summary = straight.train()
    assert summary["steps"] == 24 and summary["num_blocks"] == 2
    assert [b.steps for b in straight.blocks] == [12, 12]  # round robin: every block trained equally
    peak = summary["peak_loaded"]  # one block of two on the device at a time, the other parked
    assert 0 < peak["anchors"] < peak["total_anchors"] and peak["offloaded_bytes"] > 0
    assert (straight.weighting.evaluations > 0).all()  # both blocks validated
    teacher = straight.teacher.state_dict()
    assert any(not torch.equal(teacher[k], v) for k, v in straight.decoder.state_dict().items())

    block_config.log.checkpoint_every = 10
    killed = Trainer(block_config, scene, tmp_path / "resumed", torch.device("cpu"))
    killed.train(until=13)
    resumed = Trainer(block_config, scene, tmp_path / "resumed", torch.device("cpu"))
    assert resumed.resume() and resumed.step == 10
    resumed.train()
    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    for name, value in straight.teacher.state_dict().items():
        torch.testing.assert_close(value, resumed.teacher.state_dict()[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_merged_block_run_evaluates_and_crops_to_cells(block_config):
    from momentum_gs.io.checkpoint import latest_checkpoint, load_checkpoint
    from momentum_gs.partition import Partition

    train(block_config)
    results = evaluate_run(block_config.out)
    cfg, model, _ = load_run(block_config.out)
    partition = Partition.load(block_config.blocks.partition)
    assert results["num_anchors"] == model.num_anchors
    # each block trained anchors beyond its cell (the margin); the merge keeps exactly those inside it
    trained = [state["anchors"]["positions"].numpy()
               for state in load_checkpoint(latest_checkpoint(Path(block_config.out) / "ckpt"))["blocks"]]
    cells = [partition.block_of(positions) for positions in trained]
    assert all((cell != b).any() for b, cell in enumerate(cells))  # without a crop these would be merged too
    inside = np.concatenate([positions[cell == b] for b, (positions, cell) in enumerate(zip(trained, cells))])
    np.testing.assert_array_equal(model.anchors.positions.numpy(), inside)
    assert 5.0 < results["psnr"] < 60.0
    assert set(results["per_block"]) == {"0", "1"}


@pytest.mark.slow
def test_independent_blocks_keep_their_own_decoders(block_config, tmp_path):
    block_config.blocks.shared_decoder = False
    block_config.teacher.enabled = False
    scene = load_scene(block_config.data)
    trainer = Trainer(block_config, scene, tmp_path / "independent", torch.device("cpu"))
    initial = {k: v.clone() for k, v in trainer.decoder.state_dict().items()}
    trainer.train()
    state = trainer.state()
    d0, d1 = state["blocks"][0]["decoder"], state["blocks"][1]["decoder"]
    assert any(not torch.equal(d0[k], d1[k]) for k in d0)  # trained apart
    assert all(not torch.equal(d0[k], initial[k]) for k in d0 if k.endswith("weight"))
    assert all(torch.equal(v, initial[k]) for k, v in state["decoder"].items())  # the shared one is never trained
    model = merge_checkpoint(state, block_config, torch.device("cpu"))
    with torch.no_grad():
        image = model.render(scene.test[0], block_config.render).output.image
    assert image.shape == (scene.test[0].height, scene.test[0].width, 3) and image.max() > 0


@pytest.mark.slow
@pytest.mark.parametrize("kernel_threads", [2], indirect=True)
def test_two_runs_are_identical(tiny_config, tmp_path, kernel_threads):
    """Same seed, same result, bit for bit, on two threads (deterministic kernels), the C++ kernels splitting
    even the tiny scene's views over both (conftest.py's kernel_threads)."""
    tiny_config.threads = kernel_threads
    scene = load_scene(tiny_config.data)
    runs = []
    for name in ("one", "two"):
        trainer = Trainer(tiny_config, scene, tmp_path / name, torch.device("cpu"))
        trainer.train()
        runs.append(_params(trainer))
    assert runs[0].keys() == runs[1].keys()
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name


@pytest.mark.parametrize("kernel_threads", [3], indirect=True)
def test_the_kernels_threads_change_no_bit_of_a_training(tiny_config, tmp_path, kernel_threads):
    """On views under TORCH_OPS_MIN_PIXELS PyTorch's ops keep one thread and the C++ kernels give the same bits
    at any count: a training on 3 threads ends as one on 1, bit for bit."""
    scene = load_scene(tiny_config.data)
    runs = []
    for threads in (1, kernel_threads):
        tiny_config.threads = threads
        trainer = Trainer(tiny_config, scene, tmp_path / f"threads{threads}", torch.device("cpu"))
        trainer.train()
        runs.append(_params(trainer))
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])


def test_a_run_config_names_its_scene_and_partition_by_absolute_paths(tiny_scene, monkeypatch):
    """So that `mgs eval RUN` and `--resume` work from any folder, not only the one training started in."""
    from momentum_gs.train.run import prepare_config

    monkeypatch.chdir(tiny_scene.parent)
    cfg = prepare_config(None, tiny_scene.name, "runs/x", ["blocks.partition=runs/x/partition.npz"], resume=False)
    assert cfg.data.path == str(tiny_scene.resolve())
    assert cfg.blocks.partition == str(tiny_scene.parent.resolve() / "runs" / "x" / "partition.npz")
    assert cfg.out == "runs/x"


@pytest.mark.slow
def test_block_weighting_validates_every_block_when_rounds_alias_with_the_interval(tiny_config, tmp_path):
    """8 blocks, 4 active, rounds of 2 steps: the round-robin cycle is 4 global steps, equal to the
    validation interval. Validating at global multiples would see only blocks 4-7; each block's own count
    reaches 4 and 8, so every block is validated twice."""
    from momentum_gs.partition import auto_partition

    scene = load_scene(tiny_config.data)
    auto_partition(scene, 8).save(tmp_path / "partition8.npz")
    tiny_config.blocks.partition = str(tmp_path / "partition8.npz")
    tiny_config.blocks.active, tiny_config.blocks.interval = 4, 2
    tiny_config.optim.steps = 8  # per block: 16 global steps
    tiny_config.teacher.enabled = tiny_config.weighting.enabled = True
    tiny_config.weighting.eval_interval, tiny_config.weighting.warmup = 4, 4
    summary = train(tiny_config)
    blocks = summary["blocks"]
    assert [b["steps"] for b in blocks] == [8] * 8
    assert [b["validations"] for b in blocks] == [2] * 8
    assert all(1.0 <= b["weight"] < 2.0 for b in blocks) and max(b["weight"] for b in blocks) > 1.0
    written = json.loads((Path(tiny_config.out) / "summary.json").read_text())
    assert written["blocks"] == blocks


def test_a_blocks_weight_scales_its_loss_gradient(tiny_config):
    """``block_step`` with weight w sends w times the gradient of weight 1, to the anchors and the decoder."""
    scene = load_scene(tiny_config.data)
    grads = {}
    for weight in (1.0, 3.0):
        trainer = Trainer(tiny_config, scene, Path(tiny_config.out) / str(weight), torch.device("cpu"))
        (block,) = trainer.placement.activate([0])
        seen = []
        block.anchors.features.register_hook(lambda g: seen.append(g.clone()))
        view = block.cameras[0]
        trainer.block_step(block, view, trainer.loader[view], weight)
        grads[weight] = (seen[0], [p.grad.clone() for p in trainer.decoder.parameters()])
    assert grads[1.0][0].abs().max() > 0
    torch.testing.assert_close(grads[3.0][0], 3 * grads[1.0][0], rtol=1e-4, atol=1e-8)
    for a, b in zip(grads[1.0][1], grads[3.0][1]):
        torch.testing.assert_close(b, 3 * a, rtol=1e-4, atol=1e-8)


@pytest.mark.slow
def test_eval_fps_is_timed_warm_when_there_are_few_views(tiny_config, monkeypatch):
    """With no more held-out views than the paper drops from its timing (5), eval renders that many times first
    and times every view: a cold first render (here 0.5 s) is not in the FPS, and no view is left untimed."""
    import time

    from momentum_gs.eval import evaluate
    from momentum_gs.model.gaussian_scene import GaussianScene

    train(tiny_config)
    calls, render = [], GaussianScene.render

    def slow_first(self, *args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 1:
            time.sleep(0.5)
        return render(self, *args, **kwargs)

    monkeypatch.setattr(GaussianScene, "render", slow_first)
    results = evaluate.evaluate_run(tiny_config.out, save_images=False)
    assert results["num_test_views"] == 2 <= evaluate.WARMUP_VIEWS
    assert len(calls) == evaluate.WARMUP_VIEWS + 2
    assert results["seconds_per_view"] < 0.25 and results["fps"] > 4


def test_a_random_background_shows_through_only_where_the_render_is_transparent():
    """The render over a random colour: unchanged where alpha is 1, the colour where it is 0, and the loss's
    gradient reaches the alpha (what makes a see-through scene opaque)."""
    image = torch.full((2, 2, 3), 0.25)
    alpha = torch.tensor([[[1.0], [0.0]], [[0.5], [1.0]]], requires_grad=True)
    output = RenderOutput(image, alpha, torch.zeros(1), torch.zeros(1, 2), torch.zeros(1))
    torch.manual_seed(0)
    composited = on_random_background(output, [0.0, 0.0, 0.0])
    torch.manual_seed(0)
    colour = torch.rand(3)
    torch.testing.assert_close(composited[0, 0], image[0, 0])
    torch.testing.assert_close(composited[0, 1], image[0, 1] + colour)
    torch.testing.assert_close(composited[1, 0], image[1, 0] + 0.5 * colour)
    composited.sum().backward()
    assert (alpha.grad[..., 0] == -colour.sum()).all()


def test_training_with_a_random_background_draws_a_new_colour_each_step(tiny_config):
    """optim.random_background: the loss changes with the colour drawn (same view, same model), and the
    default leaves it as it was."""
    scene = load_scene(tiny_config.data)
    losses = {}
    for flag in (False, True):
        cfg = copy.deepcopy(tiny_config)
        cfg.optim.random_background = flag
        trainer = Trainer(cfg, scene, Path(cfg.out) / str(flag), torch.device("cpu"))
        (block,) = trainer.placement.activate([0])
        view = block.cameras[0]
        rendered = render_view([(block.anchors, trainer.decoder)], trainer.cameras[view], cfg.render,
                               trainer.appearance, trainer.cameras[view].uid)
        torch.manual_seed(1)
        first = trainer.block_loss(rendered, trainer.loader[view], trainer.cameras[view], trainer.decoder, False)[0]
        torch.manual_seed(2)
        second = trainer.block_loss(rendered, trainer.loader[view], trainer.cameras[view], trainer.decoder, False)[0]
        losses[flag] = (float(first.detach()), float(second.detach()))
    assert losses[False][0] == losses[False][1] and losses[True][0] != losses[True][1]
