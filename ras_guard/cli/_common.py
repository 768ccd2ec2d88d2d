"""Options and helpers shared by the CLI commands (private)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def quiet_transformers() -> None:
    """Silence transformers' load-time progress bars and warnings for a clean terminal."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def add_model_args(p: argparse.ArgumentParser, *, calibration: bool = True) -> None:
    """``--model``, ``--calibration``, ``--device``, ``--dtype``."""
    p.add_argument("--model", default="demo", help="checkpoint folder, or 'demo' for the bundled demo model")
    if calibration:
        p.add_argument("--calibration", default=None,
                       help="calibration folder ('demo' for the demo model's; default: the demo's with --model demo)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default=None, help="auto, float32, bfloat16, float16 (default: the checkpoint's)")


def load_guard(args: argparse.Namespace, *, calibrated: bool = True) -> Any:
    """Build a :class:`ras_guard.RASGuard` from the common options."""
    quiet_transformers()
    from ..guard import RASGuard

    cal = getattr(args, "calibration", None) if calibrated else None
    guard = RASGuard.from_pretrained(args.model, cal, device=args.device, dtype=args.dtype)
    if not calibrated:
        guard.calibration = None
    return guard
