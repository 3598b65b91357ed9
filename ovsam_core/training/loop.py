"""The training loop shared by SAM2CLIP distillation and CLIP2SAM training.

* one process, or DDP under ``torchrun`` (gloo on CPU, nccl on GPUs; multi-node works the
  same way, see ``docs/training.md``);
* a deterministic global batch order (:class:`~.data.GlobalBatchSampler`) and per-sample
  seeds, so the data a step sees depends only on the seed, the step and the global batch;
* losses normalised by counts summed over all processes and scaled by the world size before
  DDP's gradient averaging: a DDP step computes the loss and gradient of the equivalent
  single-process step;
* checkpoints with the trainable weights, optimiser, scheduler, grad scaler, step and RNG
  states (``work_dir/checkpoints/``), resumed exactly (``run.resume``);
* ``metrics.jsonl`` (one JSON object per logged step), ``loss.png``, a tqdm progress bar;
* mixed precision on GPU (fp16 with a grad scaler, or bf16), gradient clipping;
* at the end, the trained weights in the upstream file layouts (``work_dir/export``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol

import numpy as np
import torch
from torch import nn

from .config import dump_config, to_dict
from .data import GlobalBatchSampler
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from .losses import LossParts
from .plot import plot_losses
from .schedule import build_optimizer, build_scheduler, total_steps

log = logging.getLogger(__name__)
CKPT_FORMAT = "ovsam-train-ckpt-v1"


class Task(Protocol):
    name: str
    module: nn.Module
    dataset: Any
    collate: Any
    loss_weights: Dict[str, float]

    def trainable_state(self) -> Dict[str, torch.Tensor]: ...
    def load_trainable_state(self, sd: Dict[str, torch.Tensor]) -> None: ...
    def export(self, out_dir: Path) -> List[Path]: ...


# --------------------------------------------------------------------------- RNG state
def rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    st = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Dict[str, Any]) -> None:
    py = st["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    np.random.set_state(("MT19937", st["numpy_keys"].numpy().astype(np.uint32), st["numpy_pos"]))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- checkpoints
def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def find_resume(work_dir: Path, resume: Optional[str]) -> Optional[Path]:
    """``auto``: the checkpoint named in ``work_dir/checkpoints/latest`` (None if absent)."""
    if not resume:
        return None
    if resume == "auto":
        pointer = work_dir / "checkpoints" / "latest"
        if pointer.is_file():
            p = work_dir / "checkpoints" / pointer.read_text().strip()
            if p.is_file():
                return p
        return None
    p = Path(resume)
    if not p.is_file():
        raise FileNotFoundError(f"resume checkpoint not found: {p}")
    return p


def load_checkpoint(path: Path) -> Dict[str, Any]:
    ck = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path} is not an ovsam training checkpoint")
    return ck


# --------------------------------------------------------------------------- the loop
class Trainer:
    """Runs a :class:`Task` with ``cfg.run``/``cfg.optim``/``cfg.schedule``.

    Use :func:`run_training`, which also sets up the process group.
    """

    def __init__(self, cfg: Any, task: Task, info: DistInfo) -> None:
        self.cfg = cfg
        self.task = task
        self.info = info
        run = cfg.run
        self.work_dir = Path(run.work_dir)
        self.global_batch = run.batch_size * info.world_size
        self.sampler_probe = GlobalBatchSampler(len(task.dataset), run.batch_size, info.world_size, info.rank,
                                                run.seed, 0)
        self.steps_per_epoch = self.sampler_probe.steps_per_epoch
        self.total = total_steps(cfg.schedule, self.steps_per_epoch)
        self.module = task.module
        self.optimizer = build_optimizer(self.module, cfg.optim, self.global_batch)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, self.total)
        self.amp_dtype = self._amp_dtype(run.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.metrics_path = self.work_dir / "metrics.jsonl"

    def _amp_dtype(self, amp: str) -> Optional[torch.dtype]:
        dev = self.info.device.type
        if amp == "auto":
            return torch.float16 if dev == "cuda" else None
        if amp == "off":
            return None
        if amp == "fp16" and dev != "cuda":
            raise ValueError("run.amp=fp16 needs a GPU; use bf16 or off on CPU")
        return {"fp16": torch.float16, "bf16": torch.bfloat16}[amp]

    # ------------------------------------------------------------------ checkpoint
    def save_checkpoint(self) -> Path:
        ck = {
            "format": CKPT_FORMAT, "task": self.task.name, "step": self.step,
            "epoch": self.step // self.steps_per_epoch, "global_batch": self.global_batch,
            "world_size": self.info.world_size, "model": self.task.trainable_state(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "config": to_dict(self.cfg),
        }
        # the schedule is rebuilt from the config; only its position is state
        ck["scheduler"]["lr_lambdas"] = [None] * len(ck["scheduler"].get("lr_lambdas", []))
        d = self.work_dir / "checkpoints"
        path = d / f"step_{self.step:08d}.pt"
        _atomic_torch_save(ck, path)
        (d / "latest.tmp").write_text(path.name)
        os.replace(d / "latest.tmp", d / "latest")
        old = sorted(d.glob("step_*.pt"))
        keep = max(1, self.cfg.run.keep_checkpoints)
        for p in old[:-keep]:
            p.unlink(missing_ok=True)
        return path

    def resume(self, path: Path) -> None:
        ck = load_checkpoint(path)
        if ck["task"] != self.task.name:
            raise ValueError(f"{path} is a {ck['task']} checkpoint, not {self.task.name}")
        if ck["global_batch"] != self.global_batch:
            raise ValueError(f"{path} was trained with a global batch of {ck['global_batch']}, this run has "
                             f"{self.global_batch} (batch_size x processes); the trajectory would change")
        self.task.load_trainable_state(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        self.step = int(ck["step"])
        if self.info.is_main and self.metrics_path.is_file():
            keep = [line for line in self.metrics_path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.step]
            self.metrics_path.write_text("".join(line + "\n" for line in keep))
        log.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ step
    def _loss(self, parts: LossParts):
        keys = sorted(parts.sums)
        counts = torch.stack([parts.counts[k].detach().float().reshape(()) for k in keys])
        counts = all_reduce_sum(counts, self.info).clamp(min=1.0)
        w = self.task.loss_weights
        terms = {k: w[k] * parts.sums[k].float() / counts[i] for i, k in enumerate(keys)}
        local_total = sum(terms.values())
        logged = torch.stack([t.detach() for t in terms.values()])
        logged = all_reduce_sum(logged, self.info)
        out = {f"loss_{k}": float(logged[i]) for i, k in enumerate(terms)}
        out["loss"] = float(logged.sum())
        # DDP averages gradients over processes; the global loss is the sum of local terms
        return local_total * self.info.world_size, out

    def train_step(self, batch: Dict[str, Any], net: nn.Module) -> Dict[str, float]:
        dev = self.info.device
        ctx = (torch.autocast(dev.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            parts, stats = net(batch)
        loss, logged = self._loss(parts)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.clip_grad:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            gn = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.clip_grad)
            logged["grad_norm"] = float(gn)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        logged["lr"] = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        for k, v in stats.items():
            v = all_reduce_sum(v.detach().float().reshape(()).to(dev), self.info) / self.info.world_size
            logged[k] = float(v)
        return logged

    # ------------------------------------------------------------------ run
    def run(self) -> Dict[str, Any]:
        cfg, info, run = self.cfg, self.info, self.cfg.run
        if info.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.work_dir / "config.yaml")
        barrier(info)
        ck = find_resume(self.work_dir, run.resume)
        if ck is not None:
            self.resume(ck)
        net: nn.Module = self.module
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(self.module, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                      broadcast_buffers=False)
        sampler = GlobalBatchSampler(len(self.task.dataset), run.batch_size, info.world_size, info.rank,
                                     run.seed, self.total, start_step=self.step)
        loader = torch.utils.data.DataLoader(
            self.task.dataset, batch_sampler=sampler, collate_fn=self.task.collate,
            num_workers=run.num_workers, pin_memory=info.device.type == "cuda",
            persistent_workers=False)
        self.module.train()
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total, initial=self.step, desc=f"train {self.task.name}", unit="it",
                   disable=not (info.is_main and run.progress), dynamic_ncols=True)
        last: Dict[str, float] = {}
        t0 = time.perf_counter()
        metrics = open(self.metrics_path, "a") if info.is_main else None
        try:
            for batch in loader:
                logged = self.train_step(batch, net)
                self.step += 1
                now = time.perf_counter()
                logged.update(step=self.step, epoch=(self.step - 1) // self.steps_per_epoch,
                              time=round(now - t0, 4), samples=self.step * self.global_batch)
                t0 = now
                last = logged
                if not all(np.isfinite(v) for k, v in logged.items() if k.startswith("loss")):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: {logged}")
                if metrics is not None and (self.step % run.log_interval == 0 or self.step == 1
                                            or self.step == self.total):
                    metrics.write(json.dumps(logged) + "\n")
                    metrics.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{logged['loss']:.4f}", lr=f"{logged['lr']:.2e}")
                if run.checkpoint_interval and self.step % run.checkpoint_interval == 0 and self.step < self.total:
                    if info.is_main:
                        self.save_checkpoint()
                    barrier(info)
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
        result: Dict[str, Any] = {"step": self.step, "last": last, "work_dir": str(self.work_dir)}
        if info.is_main:
            result["checkpoint"] = str(self.save_checkpoint())
            try:
                result["plot"] = str(plot_losses(self.metrics_path, self.work_dir / "loss.png"))
            except Exception as e:  # noqa: BLE001 - a plot must never fail a finished run
                log.warning("could not draw the loss plot: %s", e)
            if cfg.export.enabled:
                out = Path(cfg.export.dir) if cfg.export.dir else self.work_dir / "export"
                result["exported"] = [str(p) for p in self.task.export(out)]
        barrier(info)
        return result


def run_training(cfg: Any, build_task, **task_kw) -> Dict[str, Any]:
    """Set up (distributed) processes, build the task with ``build_task(cfg, device, ...)``
    and train. Returns a summary (rank 0 has the checkpoint/export paths)."""
    run = cfg.run
    if run.threads:
        torch.set_num_threads(int(run.threads))
    info = init_distributed(run.device, run.dist_backend)
    try:
        if run.deterministic:
            torch.use_deterministic_algorithms(True)
        seed_everything(run.seed)
        task = build_task(cfg, info.device, progress=run.progress and info.is_main, info=info, **task_kw)
        seed_everything(run.seed + info.rank)
        return Trainer(cfg, task, info).run()
    finally:
        cleanup(info)
