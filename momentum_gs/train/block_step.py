"""One block's training step, the inner phase of the trainer's loop: render the block's view → losses
(reconstruction, the geometry terms, the teacher's consistency) → backward → strategy hooks (grow and prune)
→ the block's optimizer step.
"""

from __future__ import annotations

from typing import Callable

import torch

from momentum_gs.config import Config
from momentum_gs.losses import (depth_normal_loss, depth_smooth_loss, flatten_loss, psnr, reconstruction_loss,
                                sparse_depth_loss)
from momentum_gs.model.decoder import Decoder
from momentum_gs.model.gaussian_scene import render_view
from momentum_gs.model.optim import decay_steps, retarget_schedules, update_learning_rates
from momentum_gs.train.blocks import Block
from momentum_gs.train.multiview import ViewDepths, multiview_loss
from momentum_gs.train.distributed import World
from momentum_gs.train.teacher import MomentumTeacher
from momentum_gs.train.views import average_gradients, sum_growth_statistics


class BlockStep:
    """The block step of :class:`~momentum_gs.train.trainer.Trainer`, which sets the attributes below."""

    cfg: Config
    device: torch.device
    cameras: list  # the training cameras, on the device
    decoder: Decoder  # the shared decoder
    appearance: torch.nn.Embedding | None
    teacher: MomentumTeacher | None
    decoder_opt: torch.optim.Optimizer | None  # the shared decoder's
    world: World
    view_processes: int  # processes that train this block together, each on its own views
    sparse_depths: list | None  # per training camera its SfM depths (geometry.lambda_sparse_depth), or None
    gradient_bytes: int  # the block step's all-reduce of gradients (with several views a step)
    neighbours: list[list[int]] | None  # per training camera its neighbours (geometry.lambda_multiview), or None
    view_depths: ViewDepths  # each view's surface when last trained, and its photo (geometry.lambda_multiview)
    view_work: list[float]  # the work of each view of the last block_step_on, in order (WorkDeal's costs)
    ridden: torch.Tensor  # the sums of the last block_step_on's ``ride`` over the processes

    def block_step(self, block: Block, view_index: int, gt: torch.Tensor, weight: float) -> dict:
        """One step of one block on training view ``view_index`` with image ``gt`` [H, W, 3]."""
        return self.block_step_on(block, [(view_index, gt)], weight)[0]

    def block_step_on(self, block: Block, pairs: list[tuple[int, torch.Tensor]], weight: float,
                      ride: Callable[[list[dict]], torch.Tensor] | None = None) -> list[dict]:
        """One step of one block on this process's (training view, image [H, W, 3]) ``pairs``: their gradients summed,
        then averaged over the views of every process; one metrics dict per view.

        ``ride``, with several processes on the block: makes, from the views' metrics (their anchor counts taken before
        the growth), the values to sum over the processes in the gradients' all-reduce (one collective a step instead of
        two); their sums are left in :attr:`ridden`."""
        step = block.steps + 1  # a block's schedules follow its own steps
        for opt in (block.optimizer, block.decoder_optimizer):
            if opt is not None:  # a re-planned run's decays end on its new last step (Trainer.retarget)
                retarget_schedules(opt, block.steps, decay_steps(self.cfg.optim))
                update_learning_rates(opt, step)
        decoder = block.decoder or self.decoder
        geometry = self.cfg.geometry
        depth_normal = geometry.lambda_depth_normal > 0 and step > geometry.depth_normal_from
        depth = max(geometry.lambda_sparse_depth, geometry.lambda_multiview, geometry.lambda_depth_smooth) > 0
        extras = ("depth", "normal") if depth_normal else ("depth",) if depth else ()
        seen, self.view_work = [], []
        for view_index, gt in pairs:
            camera = self.cameras[view_index]
            view = render_view([(block.anchors, decoder)], camera, self.cfg.render, self.appearance, camera.uid,
                               extras=extras)
            loss, parts = self.block_loss(view, gt, camera, decoder, depth_normal)
            if geometry.lambda_multiview > 0:
                term = geometry.lambda_multiview * self.multiview_term(block, view, gt, camera, step)
                parts["multiview"] = term.detach()
                loss = loss + term
            (loss * weight).backward()
            self.collect_statistics(block, step, view, camera)
            seen.append((loss.detach(), parts, view.output.image.detach().clamp(0, 1), view.gaussians.num, gt))
            work = view.output.pairs
            self.view_work.append(float(view.gaussians.num if work is None else work))
        out = self.view_metrics(seen, weight, block.anchors.num_anchors)
        if self.view_processes > 1:  # several processes on this block: the gradients of every view averaged
            rows = [p for group in block.optimizer.param_groups for p in group["params"]]
            shared = [p for opt in (block.decoder_optimizer, self.decoder_opt) if opt is not None
                      for group in opt.param_groups for p in group["params"]]
            if len(pairs) > 1:  # this process's views summed; the all-reduce averages over the processes
                for p in rows + shared:
                    if p.grad is not None:
                        p.grad.div_(len(pairs))
            self.gradient_bytes, self.ridden = average_gradients(rows, shared, self.world, ride and ride(out))
        before = block.anchors.num_anchors
        self.grow_and_prune(block, step)
        for opt in (block.optimizer, block.decoder_optimizer):
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)
        block.steps = step
        if block.anchors.num_anchors != before:  # grown or pruned: the metrics count the anchors after
            anchors = torch.tensor(float(block.anchors.num_anchors)).to(self.device, non_blocking=True)
            for metrics in out:
                metrics["num_anchors"] = anchors
        return out

    @torch.no_grad()
    def view_metrics(self, seen: list[tuple], weight: float, anchors: int) -> list[dict]:
        """One dict a view of ``seen`` ((loss, its terms, image, Gaussians drawn, photo) each): the loss, its terms, the
        PSNR, the block's ``weight``, the Gaussians and the ``anchors``; kept on the device, as the logger reads them
        only when it shows them."""
        out = []
        for loss, parts, image, gaussians, gt in seen:
            sizes = torch.tensor([weight, gaussians, anchors], dtype=torch.float32).to(self.device, non_blocking=True)
            out.append({"loss": loss, **parts, "psnr": psnr(image, gt),
                        "weight": sizes[0], "num_gaussians": sizes[1], "num_anchors": sizes[2]})
        return out

    def block_loss(self, view, gt: torch.Tensor, camera, decoder: Decoder,
                   depth_normal: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the loss of a rendered ``view`` against ``gt`` [H, W, 3], its weighted terms detached, by name).
        ``depth_normal``: whether the depth-normal term is on yet (before that it logs a zero)."""
        geometry, teacher = self.cfg.geometry, self.cfg.teacher
        image = view.output.image
        if self.cfg.optim.random_background:
            image = on_random_background(view.output, self.cfg.render.background)
        loss, parts = reconstruction_loss(image, gt, view.gaussians.scales, self.cfg.optim)
        if geometry.lambda_flatten > 0:
            term = geometry.lambda_flatten * flatten_loss(view.gaussians.scales)
            parts["flatten"] = term.detach()
            loss = loss + term
        if geometry.lambda_depth_normal > 0:
            if depth_normal:
                term = depth_normal_loss(view.output.depth, view.output.alpha, view.output.normal, camera.K.to(gt))
            else:
                term = loss.new_zeros(())  # every step logs the same terms
            term = geometry.lambda_depth_normal * term
            parts["depth_normal"] = term.detach()
            loss = loss + term
        if geometry.lambda_sparse_depth > 0:
            known = self.sparse_depths[camera.uid]
            term = geometry.lambda_sparse_depth * sparse_depth_loss(view.output.depth, view.output.alpha, known.pixels,
                                                                    known.depths, known.weights)
            parts["sparse_depth"] = term.detach()
            loss = loss + term
        if geometry.lambda_depth_smooth > 0:
            term = geometry.lambda_depth_smooth * depth_smooth_loss(view.output.depth, view.output.alpha, gt)
            parts["depth_smooth"] = term.detach()
            loss = loss + term
        if self.teacher is not None:
            cons, _ = self.teacher.consistency(view.gaussians, teacher.gradient, decoder)
            parts["consistency"] = teacher.lambda_cons * cons.detach()
            loss = loss + teacher.lambda_cons * cons
        return loss, parts

    def multiview_term(self, block: Block, view, gt: torch.Tensor, camera, step: int) -> torch.Tensor:
        """The multi-view term of a rendered ``view`` against one of its neighbours (taken in turn by step), after
        ``geometry.multiview_from`` and up to ``geometry.multiview_until`` (0: the last step), on every
        ``geometry.multiview_every``-th step; 0 on other steps, and while no neighbour has been trained yet. Keeps the
        view's surface for the views it neighbours at every step."""
        output = view.output
        term = output.depth.sum() * 0.0
        grey = self.view_depths.grey(camera.uid, gt)
        geometry = self.cfg.geometry
        if (step > geometry.multiview_from and (not geometry.multiview_until or step <= geometry.multiview_until)
                and step % geometry.multiview_every == 0):
            candidates = [j for j in self.neighbours[camera.uid] if self.view_depths.get(block.id, j) is not None]
            if candidates:
                other = in_turn(candidates, step, geometry.multiview_every)
                term = multiview_loss(output.depth, output.alpha, grey, camera, self.view_depths.grey(other),
                                      self.view_depths.get(block.id, other), self.cameras[other])
        self.view_depths.keep(block.id, camera.uid, output.depth.detach(), output.alpha.detach())
        return term

    def collect_statistics(self, block: Block, step: int, view, camera) -> None:
        """Accumulate a rendered view's screen-space statistics for growth, when the block's schedule says so."""
        if block.strategy.should_collect(step) and view.output.means2d.grad is not None:
            block.strategy.step_stats(view.gaussians, view.output.radii, view.output.means2d.grad,
                                      camera.width, camera.height)

    def grow_and_prune(self, block: Block, step: int) -> None:
        """Grow and prune when the block's schedule says so, from every view's statistics."""
        if block.strategy.should_adjust(step):
            if self.view_processes > 1:
                sum_growth_statistics(block.strategy, self.world)
            block.strategy.adjust(block.anchors, block.optimizer)


def in_turn(candidates: list, step: int, every: int):
    """The neighbour for the multi-view term on ``step``: ``candidates`` taken in turn over the term's steps (every
    ``every``-th step), so that each of them is used whatever ``every`` and their number."""
    return candidates[step // every % len(candidates)]


def on_random_background(output, background: list[float]) -> torch.Tensor:
    """[H, W, 3] the render ``output`` composited over a random colour instead of ``background``:
    image + (1 − alpha)·(colour − background), differentiable through the alpha."""
    image = output.image
    colour = torch.rand(3, device=image.device, dtype=image.dtype)
    return image + (1.0 - output.alpha) * (colour - torch.as_tensor(background, dtype=image.dtype, device=image.device))
