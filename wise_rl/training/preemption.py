"""Preemption-safe training: SIGTERM (what SLURM and Kubernetes send before they kill) or SIGINT (Ctrl-C) ends
the current optimizer step (for GRPO / RLOO: the current reused generation batch, :func:`exact_stop_every`), saves a
complete ``checkpoint-N`` and stops; a second signal exits at once.

:class:`PreemptionCallback` is a ``transformers.TrainerCallback``: the signal handler only sets a flag; at the next
``on_step_end`` the callback sets ``control.should_save`` and ``control.should_training_stop``, so the Trainer saves
and stops through its own machinery (no forked loop). Under several processes the flag is reduced with MAX across
ranks at each step end, so every rank saves and stops at the same step (a signal that reached one rank only is
enough). :func:`exit_if_interrupted` then logs "interrupted at step N; checkpoint-N saved; re-run the same command
to resume" and raises ``SystemExit(128 + signal)`` (143 for SIGTERM, 130 for SIGINT); the final model and ``DONE``
are not written, so the re-run resumes from that checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class PreemptionCallback(_callback_base()):
    """Install with :meth:`install` (main thread) before ``trainer.train``; :meth:`uninstall` restores the
    previous handlers. ``signum`` is the signal received (None: none), ``stopped_at`` the step saved. ``every``: stop
    only at a step that is a multiple of it (:func:`exact_stop_every`)."""

    def __init__(self, every: int = 1):
        self.every = max(1, int(every))
        self.signum: int | None = None
        self.stopped_at: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.signum is not None:  # the second signal: no more waiting
            os._exit(128 + signum)
        self.signum = signum
        logger.warning("received %s: finishing the current step, then saving a checkpoint (send it again to exit "
                       "at once)", signal.Signals(signum).name)

    def install(self) -> None:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _any_rank_signalled(self, args) -> int | None:
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.signum
        flag = torch.tensor([self.signum or 0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None

    def on_step_end(self, args, state, control, **kwargs):
        signum = self._any_rank_signalled(args)
        if signum is not None and state.global_step % self.every == 0:
            self.signum = self.signum or signum
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


def exact_stop_every(args) -> int:
    """The step multiple at which a checkpoint resumes exactly: GRPO / RLOO reuse a generation batch for
    ``steps_per_generation`` micro-batches × ``num_iterations`` and do not checkpoint it (a resume inside such a
    cycle regenerates it), so a signal is honoured at the end of the cycle, ``cycle / gcd(cycle, grad_accum)``
    optimizer steps; 1 for other trainers."""
    import math

    if not hasattr(args, "num_iterations"):
        return 1
    accum = int(args.gradient_accumulation_steps or 1)
    cycle = int(getattr(args, "steps_per_generation", None) or accum) * int(args.num_iterations or 1)
    return cycle // math.gcd(cycle, accum)


def exit_if_interrupted(callback: PreemptionCallback, output_dir) -> None:
    """After ``trainer.train`` returns: when a signal stopped it, log where and raise ``SystemExit(128 + signal)``."""
    if callback.signum is None:
        return
    step = callback.stopped_at
    if step is None:  # the signal came after the last step ended: the run finished normally
        return
    logger.warning("interrupted at step %d; checkpoint-%d saved in %s; re-run the same command to resume", step,
                   step, output_dir)
    raise SystemExit(128 + int(callback.signum))
