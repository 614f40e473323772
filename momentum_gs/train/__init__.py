"""Training: block-wise Momentum-GS and what runs around it.

- the loop: ``trainer`` (n blocks, k active, a shared decoder), ``block_step`` (one block's render, losses,
  backward and optimizer step), ``checkpointing`` (the trainer's state saved and resumed), ``teacher`` (the
  momentum teacher and its consistency loss), ``weighting`` (reconstruction-guided block weights),
  ``scheduler`` (which blocks train at a step, and on which process);
- the blocks' state: ``blocks`` (what a block owns, moved off the device and back, merged), ``block_store``
  (where inactive blocks wait);
- around it: ``run`` (configs, run folders and resume for ``mgs train`` and ``mgs demo``), ``distributed``
  (several processes), ``seeding`` (runs that repeat bit for bit), ``progress`` (bar, log file,
  TensorBoard).

Distillation into a standard 3DGS student (``mgs distill``) is ``export/distill.py``; ``mgs demo`` is
``commands/demo.py``.
"""
