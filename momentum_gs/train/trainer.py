"""Training: n blocks of Scaffold-GS anchors, k active at a time, one shared decoder, a momentum teacher.

One block (no partition) is plain Scaffold-GS. ``Trainer.train()`` reads top to bottom. The scheduler picks every
step's blocks and views up front (``view_plan``; processes that share a step's views deal them as their images are
first asked for, :class:`~momentum_gs.train.views.WorkDeal`); then one step is: fetch views (the images, prefetched)
→ place blocks (send each active block to the process that trains it, load it on the device) → schedules (learning
rates) → teacher update (the EMA of the decoder as the previous step's optimizer step left it, taken before this
step's forward) → for each active block: render → losses → backward → strategy hooks → the block's optimizer step;
then gradient averaging (the shared decoder's, over processes) → the decoder's optimizer step → logging →
evaluation/checkpoint. Where the blocks are is :mod:`momentum_gs.train.placement`'s business, one block's step
:mod:`momentum_gs.train.block_step`'s, and saving and resuming :mod:`momentum_gs.train.checkpointing`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import torch

from momentum_gs.config import Config, save_config, to_dict, use_threads
from momentum_gs.config.load import scale_schedules
from momentum_gs.data.images import ImageLoader
from momentum_gs.data.scene import SceneData
from momentum_gs.data.sparse_depth import scene_depths
from momentum_gs.errors import Interrupted, UserError
from momentum_gs.io.run_folder import RunFolder
from momentum_gs.losses import channel_mean_psnr, ssim
from momentum_gs.model.decoder import Decoder, make_appearance
from momentum_gs.model.gaussian_scene import render_view
from momentum_gs.model.optim import decay_steps, make_decoder_optimizer, retarget_schedules, update_learning_rates
from momentum_gs.partition.run import load_partition_for
from momentum_gs.render.kernels import use_kernels
from momentum_gs.train import distributed as D
from momentum_gs.train.block_step import BlockStep
from momentum_gs.train.blocks import Block
from momentum_gs.train.checkpointing import Checkpointing
from momentum_gs.train.multiview import ViewDepths, neighbour_views
from momentum_gs.train.placement import Placement
from momentum_gs.train.progress import Metrics, TrainLogger
from momentum_gs.train.replan import TimeBudget
from momentum_gs.train.scheduler import BlockScheduler
from momentum_gs.train.seeding import deterministic_kernels, seed_everything
from momentum_gs.train.teacher import MomentumTeacher
from momentum_gs.train.views import WorkDeal, step_sums, view_costs, views_per_step
from momentum_gs.train.weighting import BlockWeighting


class Trainer(BlockStep, Checkpointing):
    """Trains every block of ``scene`` (one block without a partition).

    Args:
        cfg: the resolved config.
        scene: the loaded scene (cameras, points).
        out_dir: the run folder (config.yaml, ckpt/, tb/, train.log, offloaded blocks).
        device: where the active blocks, the decoder and the images of the current step live.
        world: the training processes (:mod:`momentum_gs.train.distributed`); each trains its share of
            the active blocks, and all of them hold the same decoder and teacher.

    The blocks themselves, and which process and device hold each, are :attr:`placement`'s
    (:class:`~momentum_gs.train.placement.Placement`); :meth:`block_step` comes from
    :class:`~momentum_gs.train.block_step.BlockStep`, :meth:`save`, :meth:`load` and :meth:`resume` from
    :class:`~momentum_gs.train.checkpointing.Checkpointing`.
    """

    def __init__(self, cfg: Config, scene: SceneData, out_dir: Path, device: torch.device,
                 world: D.World = D.SINGLE):
        self.cfg = cfg
        self.scene = scene
        self.out_dir = Path(out_dir)
        self.device = device
        self.world = world
        self.folder = RunFolder(out_dir)
        use_threads(cfg.threads, device, pixels=max((cam.width * cam.height for cam in scene.train), default=None),
                    processes=world.local_size)
        use_kernels(cfg.render.kernels)  # after use_threads: passes the kernels' thread count on
        seed_everything(cfg.seed, deterministic_kernels(cfg.deterministic, device))
        self.partition = load_partition_for(scene, cfg.blocks.partition) if cfg.blocks.partition else None
        # the partition file's content, so a resume notices a file replaced under the same name
        self.partition_digest = (hashlib.sha256(Path(cfg.blocks.partition).read_bytes()).hexdigest()
                                 if cfg.blocks.partition else "")
        n = 1 if self.partition is None else self.partition.num_blocks
        if cfg.blocks.active > n:
            raise UserError(f"blocks.active={cfg.blocks.active} but the scene has only {n} block(s)")
        shared = cfg.blocks.shared_decoder
        if not shared and (cfg.teacher.enabled or cfg.model.appearance_dim > 0):
            raise UserError("independent decoders (blocks.shared_decoder=false) work without the teacher and "
                            "without appearance codes; switch those off")
        self.decoder, self.appearance = self._initial_decoder()
        self.decoder_opt = make_decoder_optimizer(self.decoder, self.appearance, cfg.optim) if shared else None
        self.teacher = MomentumTeacher(self.decoder) if cfg.teacher.enabled else None
        self.view_processes, self.views = views_a_step(cfg, world, n)
        if cfg.blocks.active < world.size and self.view_processes == 1:
            raise UserError(f"{world.size} processes but blocks.active={cfg.blocks.active}: every process needs "
                            f"an active block, so set blocks.active >= {world.size} (or start fewer processes)")
        self.scheduler = BlockScheduler(n, cfg.blocks.active, cfg.blocks.policy, cfg.blocks.interval, cfg.seed,
                                        world_size=world.size // self.view_processes)
        self.weighting = BlockWeighting(n, cfg.weighting.lam, cfg.weighting.sigma, cfg.weighting.ema,
                                        cfg.weighting.warmup, cfg.weighting.enabled)
        self.placement = Placement(cfg, scene, self.partition, self.decoder, device, world, self.out_dir)
        # the decoder's gradients, with the step's metrics; with several views a step the block step averages them
        self.reducer = D.StepReducer(self._shared_parameters() if self.view_processes == 1 else [], world)
        self.gradient_bytes = 0
        self.loader = ImageLoader(scene.train, cache=cfg.data.cache_images, prefetch=cfg.data.prefetch,
                                  cache_bytes=cfg.data.cache_bytes, processes=world.local_size)
        self.cameras = [camera.to(device) for camera in scene.train]  # copied once, not every step
        self.sparse_depths = scene_depths(scene, cfg, device) if cfg.geometry.lambda_sparse_depth else None
        self.neighbours = neighbour_views(scene.train) if cfg.geometry.lambda_multiview else None
        self.view_depths = ViewDepths()
        self.view_work: list[float] = []
        self.sfm_costs = self._view_costs()  # a function of the scene alone: once
        self.deal = self._work_deal()
        k = self.scheduler.num_active  # the scheduler owns k from here on
        self.total_steps = math.ceil(cfg.optim.steps * n / k)  # every block gets ~optim.steps
        self.step = 0  # global steps completed
        self.logger: TrainLogger | None = None  # while train() runs
        # The first global step whose loss was not finite (0: none yet), kept on the device so that checking
        # it costs no host sync per step; read when the logger reads anyway, and before every checkpoint.
        self.first_bad_step = torch.zeros((), dtype=torch.int64, device=device)
        self.stop_requested = False  # set by SIGINT/SIGTERM (single process): checkpoint, then stop
        self.budget: TimeBudget | None = None  # --time: the deadline, past which train() stops after the step, and
        # the re-plans of the run's end
        self.stopped_at_deadline = False
        self.view = None  # a live viewer's source (momentum_gs.view.sources.TrainingSource) on rank 0, or None

    def _initial_decoder(self) -> tuple[Decoder, torch.nn.Embedding | None]:
        """The decoder (and appearance table) every block starts from, initialised on the CPU from the seed."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            decoder = Decoder.from_config(self.cfg.model)
            appearance = make_appearance(len(self.scene.train), self.cfg.model.appearance_dim)
        return decoder.to(self.device), None if appearance is None else appearance.to(self.device)

    @property
    def blocks(self) -> list[Block]:
        """The blocks of the run, in block order (:attr:`placement`'s)."""
        return self.placement.blocks

    def _shared_parameters(self) -> list[torch.Tensor]:
        """The parameters of the shared decoder's optimizer, in its order (empty for independent blocks)."""
        if self.decoder_opt is None:
            return []
        return [p for group in self.decoder_opt.param_groups for p in group["params"]]

    # ---- the loop -------------------------------------------------------------------------------------
    def train(self, until: int | None = None, quiet: bool = False) -> dict:
        """Train from ``self.step`` to the last step (or stop after global step ``until``); returns a summary.

        Stopping at ``until`` writes no final checkpoint, so the run folder is left exactly as a run killed
        after that step (schedules still span the whole run); call :meth:`save` to keep the state. ``quiet``:
        no progress bar and no logs (a probe's steps).
        """
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        end = self.total_steps if until is None else min(until, self.total_steps)
        if self.world.is_main:
            save_config(cfg, self.folder.config)
        logger = self.logger = TrainLogger(self.out_dir, cfg.log, start=self.step, total=self.total_steps,
                                           world=self.world, run_config=to_dict(cfg), quiet=quiet)
        started, first_step = time.perf_counter(), self.step
        try:
            while self.step < end and not self.stopped_at_deadline:  # a re-plan that lengthens the run comes back
                end = self._train_to(end, replan=until is None)
        finally:
            logger.close()  # ends the progress bar's line, so an error message stands on its own
            self.logger = None
        checkpoint = self.save() if self.step == self.total_steps or self.stopped_at_deadline else None
        seconds = time.perf_counter() - started
        views = self.scheduler.num_active * self.views  # views of a global step, over all processes
        return {"steps": self.step, "steps_run": self.step - first_step, "seconds": seconds,
                "steps_per_second": (self.step - first_step) / max(seconds, 1e-9), "views_per_step": views,
                "views_per_second": (self.step - first_step) * views / max(seconds, 1e-9),
                "num_blocks": len(self.blocks), "num_anchors": self.num_anchors(),
                "peak_loaded": self.placement.peak_loaded,
                "processes": self.world.size, "allreduce_bytes_per_step":
                    self.reducer.bytes_per_step + self.gradient_bytes,
                "blocks": self.weighting.report(self.scheduler.counts_before(self.step)),
                "stopped_at_deadline": self.stopped_at_deadline,
                "replanned": self.budget.replanned if self.budget is not None else None,
                "checkpoint": checkpoint and str(checkpoint)}

    def _train_to(self, end: int, replan: bool) -> int:
        """:meth:`train`'s loop from :attr:`step` to global step ``end``; returns the run's end as it stands after
        (``replan``: a ``--time`` run's re-plan, :meth:`replan_now`, may move it)."""
        cfg, logger = self.cfg, self.logger
        together = self.view_processes
        costs, member, per = self.sfm_costs, self.world.rank % together, self.views // together
        walk = costs if self.cfg.distributed.balance_views else None  # a walk paired by the SfM points' costs
        cameras = [b.cameras for b in self.blocks]
        if self.deal is None:
            plan = self.scheduler.view_plan(self.step, end, cameras, self.cfg.seed, self.world.size // together,
                                            self.world.rank // together, views=self.views, member=member,
                                            per_process=per, costs=walk, deal=costs)
            mine = plan.__getitem__
        else:  # every view of each step, dealt only when its images are first asked for (WorkDeal)
            plan = self.scheduler.view_plan(self.step, end, cameras, self.cfg.seed, views=self.views,
                                            per_process=self.views, costs=walk)
            mine = self.deal.plan(plan, self.step, member)
        steps = range(len(plan))
        images = self.loader.iterate((view for i in steps for _, view in mine(i)), self.device)
        try:
            for entries in map(mine, steps):
                views = [(b, v, next(images)[1]) for b, v in entries]
                with self.view.lock if self.view is not None else contextlib.nullcontext():
                    metrics, local = self.train_step(views)
                if self.step % cfg.log.progress_every == 0:
                    self.check_finite()
                logger.log(self.step, metrics, local)
                self.record()
                self.after_step()
                if self.view is not None:
                    self.view.step_done(self.step, metrics)  # waits here while the viewer's pause is on
                if self.step % cfg.log.progress_every == 0 and self.budget is not None and self.budget.past():
                    self.stopped_at_deadline = True
                    break
                if self.stop_requested:
                    path = self.save()
                    raise Interrupted(f"interrupted at step {self.step}; saved {path}; continue with "
                                      f"`mgs train --resume --out {self.out_dir}`")
                if replan and self.budget is not None and self.budget.replan_due(self.step):
                    return self.replan_now()  # the loop starts again from here to the new end
        finally:
            images.close()  # the decodes it had started ahead are dropped
        return end

    def replan_now(self) -> int:
        """Move the run's end to what its :attr:`budget` says fits the deadline, and say so; returns the new last
        global step."""
        before = self.total_steps
        total, pace = self.budget.last_step(self.step)
        self.retarget(total)
        line = self.budget.moved(self.step, before, self.total_steps, pace)
        if line and self.logger is not None and self.world.is_main:
            self.logger.write(line)
        return self.total_steps

    def retarget(self, total: int) -> None:
        """Make global step ``total`` (at least the current one) the run's last: ``optim.steps`` set to match, and
        every schedule point still ahead moved to keep its share of the steps left
        (:func:`~momentum_gs.config.load.scale_schedules`); the config.yaml written again. The optimizers' decays
        follow at their next step (``decay_steps`` against their own)."""
        cfg, n, k = self.cfg, len(self.blocks), self.scheduler.num_active
        now = self.block_equivalent(self.step)
        steps = max(now, total * k // n, 1)
        scale_schedules(cfg, (steps - now) / max(cfg.optim.steps - now, 1), since=now, intervals=False)
        self.weighting.warmup_steps = cfg.weighting.warmup
        cfg.optim.steps = steps
        self.total_steps = max(self.step, math.ceil(steps * n / k))
        if self.logger is not None:
            self.logger.retotal(self.total_steps)
        if self.world.is_main:
            save_config(cfg, self.folder.config)

    def train_step(self, views: list[tuple[int, int, torch.Tensor]]) -> tuple[Metrics, Metrics]:
        """One global step: every active block takes one step on its view; the decoder takes one averaged step.

        ``views`` are this process's (block, view, image) triples. Returns the step's metrics averaged
        over all active blocks of all processes, and over this process's blocks (on the device until read).
        """
        step = self.step + 1
        # place blocks: the active ones to the processes that train them, and onto the device
        if self.view_processes == 1:  # with several processes on a block every process holds the one block
            wanted = [self.scheduler.blocks_for(step, self.world.size, rank) for rank in range(self.world.size)]
            self.placement.exchange(wanted)
        if self.decoder_opt is not None:  # schedules
            retarget_schedules(self.decoder_opt, self.block_equivalent(self.step), decay_steps(self.cfg.optim))
            update_learning_rates(self.decoder_opt, self.block_equivalent(step))
        if self.teacher is not None:  # teacher update, for the previous step's optimizer step
            self.teacher.update(self.decoder, self.cfg.teacher.momentum)
        mine: dict[int, list[tuple[int, torch.Tensor]]] = {}  # this process's views by block, in order
        for b, view, gt in views:
            mine.setdefault(b, []).append((view, gt))
        active = self.placement.activate(list(mine))
        ride = None if self.view_processes == 1 else lambda out: step_sums(out, self.deal, views, self.view_work)
        metrics = [m for block, pairs in zip(active, mine.values())  # weights on the host
                   for m in self.block_step_on(block, pairs, self.weighting.weight(block.id, block.steps + 1), ride)]
        names = list(metrics[0])
        values = torch.stack([torch.stack(list(m.values())) for m in metrics])  # [blocks, metrics]
        k = self.scheduler.num_active * self.views
        # the decoder's gradients averaged, the metrics summed; with view processes, with the block's gradients
        sums = self.reducer.reduce(k, values.sum(dim=0)) if ride is None else self.ridden
        if ride is not None:  # every process holds the block: its anchors counted after their growth
            sums[names.index("num_anchors")] = values[:, names.index("num_anchors")].mean() * k
        if self.deal is not None:
            sums, work = sums[:len(names)], sums[len(names):]
            self.deal.record(step, work.tolist())
        # summed over every process, so all of them see a bad loss at the same step
        self.first_bad_step = torch.where(torch.isfinite(sums[0]) | (self.first_bad_step > 0),
                                          self.first_bad_step, torch.full_like(self.first_bad_step, step))
        if self.decoder_opt is not None:
            self.decoder_opt.step()
            self.decoder_opt.zero_grad(set_to_none=True)
        self.step = step
        return Metrics(names, sums / k), Metrics(names, values.mean(dim=0))

    def record(self) -> None:
        """Learning rates and anchor counts of the loaded blocks, and now and then a render, for TensorBoard
        and Weights & Biases (rank 0's blocks)."""
        log, step = self.logger, self.step
        loaded = self.placement.loaded()
        if step % self.cfg.log.progress_every == 0:
            optimizers = [self.decoder_opt or loaded[0].decoder_optimizer, loaded[0].optimizer]
            values = {f"lr/{group['name']}": group["lr"] for opt in optimizers for group in opt.param_groups}
            values.update({f"blocks/{block.id}/anchors": block.anchors.num_anchors for block in loaded})
            log.scalars(step, values)
        every = self.cfg.log.image_every
        if every and (step % every == 0 or step == self.total_steps) and self.world.is_main:  # also the last
            block = loaded[0]
            index = (block.val_views or block.cameras)[0]
            with torch.no_grad():
                image = self.render_train_view(block, index)
            gt = self.loader[index].to(image.device)
            log.image(step, f"views/block{block.id}", torch.cat([image, gt], dim=1))  # the render beside its photo

    def after_step(self) -> None:
        """Block-weighting validation (shared by all processes), replica checks and periodic checkpoints."""
        cfg = self.cfg
        due = self.scheduler.due(self.step, cfg.weighting.eval_interval) if cfg.weighting.enabled else []
        if due:  # every process knows which blocks are due, so all of them join the all-reduce
            # a block that every process holds: process 0 measures
            measures = self.view_processes == 1 or self.world.is_main
            results = {b: self.validate(self.blocks[b]) for b in due
                       if self.blocks[b].loaded and self.blocks[b].val_views and measures}
            table = self.weighting.measurements(len(self.blocks), results)
            self.weighting.apply(D.all_reduce_sum(table, self.world))
            if self.logger is not None:
                w = self.weighting
                weights = w.weights(self.scheduler.counts_before(self.step))
                series = {"psnr": w.psnr, "ssim": w.ssim, "weight": weights}
                self.logger.scalars(self.step, {f"blocks/{b}/{name}": float(values[b])
                                                for name, values in series.items()
                                                for b in range(len(self.blocks)) if w.evaluations[b] > 0})
        if cfg.distributed.check_every and self.step % cfg.distributed.check_every == 0:
            D.check_replicas(self._shared_parameters(), self.world, "the online decoder", self.step)
            if self.teacher is not None:
                D.check_replicas(list(self.teacher.state_dict().values()), self.world, "the teacher", self.step)
            if self.view_processes > 1:  # every process holds the one block
                D.check_replicas(list(self.blocks[0].anchors.state_dict().values()), self.world, "the block",
                                 self.step)
        if cfg.log.checkpoint_every and self.step % cfg.log.checkpoint_every == 0:
            self.save()

    @torch.no_grad()
    def validate(self, block: Block) -> tuple[float, float]:
        """Mean PSNR (the paper's: mean of per-channel PSNRs) and SSIM of a loaded block over its validation views."""
        scores = []
        for index in block.val_views:
            image = self.render_train_view(block, index).clamp(0, 1)
            gt = self.loader[index].to(self.device)
            scores.append((float(channel_mean_psnr(image, gt)), float(ssim(image, gt))))
        return tuple(float(v) for v in np.mean(scores, axis=0))

    def render_train_view(self, block: Block, index: int) -> torch.Tensor:
        """[H, W, 3] render of training view ``index`` by a loaded block."""
        camera = self.cameras[index]
        parts = [(block.anchors, block.decoder or self.decoder)]
        return render_view(parts, camera, self.cfg.render, self.appearance, camera.uid).output.image

    def block_equivalent(self, step: int) -> int:
        """Global step → the step count of a block at that point (k of n blocks train each step)."""
        return step * self.scheduler.num_active // len(self.blocks)

    def _view_costs(self) -> list[list[float]] | None:
        """Each block's views' work, to pair a step's views by it or deal them to the processes
        (:mod:`momentum_gs.train.views`); None with one view a process a step and ``distributed.balance_views`` off."""
        if self.views == 1 or (self.views == self.view_processes and not self.cfg.distributed.balance_views):
            return None
        return [view_costs(self.scene, block.cameras) for block in self.blocks]

    def _work_deal(self) -> WorkDeal | None:
        """The deal by each view's work at its last render (of the one block view processes train), where processes
        share a step's views several each and ``distributed.deal_by`` is "pairs"; else None (:meth:`_train_to` deals
        by :attr:`sfm_costs`)."""
        if self.view_processes == 1 or self.views == self.view_processes or self.cfg.distributed.deal_by != "pairs":
            return None
        return WorkDeal(self.blocks[0].cameras, self.sfm_costs[0], self.cfg.data.prefetch,
                        self.views // self.view_processes)

    def num_anchors(self) -> int:
        """Anchors over all blocks of all processes (collective when G > 1)."""
        local = torch.tensor([self.placement.local_anchors()], dtype=torch.float64)
        return int(D.all_reduce_sum(local, self.world))


def views_a_step(cfg: Config, world: D.World, blocks: int) -> tuple[int, int]:
    """(processes that train a block together, views a step): all processes where they share a scene of one block
    (:mod:`momentum_gs.train.views`), each on ``distributed.views_per_process`` views; else one process, one view.
    A config planned for another count (``distributed.planned_views``) is refused in one line."""
    together = world.size if blocks == 1 and world.distributed else 1
    views = views_per_step(cfg, together)
    if cfg.distributed.planned_views != views:
        raise UserError(f"{world.size} process(es) on a scene of {blocks} block(s) take {views} view(s) a step, "
                        f"but the config is planned for distributed.planned_views="
                        f"{cfg.distributed.planned_views}: start it with `mgs train`, which plans it "
                        "(distributed.view_processes sets the processes)")
    return together, views
