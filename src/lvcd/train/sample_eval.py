"""Sampling quality during training (``[eval]``): colorize held-out synthetic shots and score them.

Loss curves say little about whether a model colorizes; this samples ``eval.shots`` held-out shots
(``lvcd.data.synthetic``, split ``heldout``, ``eval.frames`` frames at the training size) with ``eval.steps`` Euler
steps and scores them (PSNR, region accuracy; ``lvcd.demo.quality``) next to the copy-the-reference and
mean-colour baselines. Rows go to ``logs/eval_log.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from lvcd.data.synthetic import split_seed, synth_shot
from lvcd.demo.quality import BASELINES, baseline_frames, colorize_synthetic, mean_scores, score_frames
from lvcd.model import LVCDModel
from lvcd.train.run_dir import continue_csv_log

EVAL_LOG = "eval_log.csv"
SCORES = ("psnr", "ssim", "region")


class SampleEvaluator:
    """Held-out shots (made once) and the baselines' scores; ``__call__(model, step)`` logs one row."""

    def __init__(self, settings, size_hw: tuple[int, int], output_dir: Path, start_step: int):
        self.settings = settings
        self.shots = [synth_shot(split_seed("heldout", i), settings.frames, size_hw) for i in range(settings.shots)]
        self.path = Path(output_dir) / "logs" / EVAL_LOG
        self.columns = ["step", *SCORES, *(f"{b}_{s}" for b in BASELINES for s in SCORES)]
        self.baselines = {
            name: mean_scores([score_frames(baseline_frames(shot, name), shot) for shot in self.shots])
            for name in BASELINES
        }
        continue_csv_log(self.path, self.columns, start_step)  # rows up to the resumed step; later ones are appended

    def has_row(self, step: int) -> bool:
        """Whether the log holds the row of ``step``."""
        with self.path.open(newline="") as f:
            return any(int(row["step"]) == step for row in csv.DictReader(f))

    @torch.no_grad()
    def __call__(self, model: LVCDModel, device: torch.device, step: int) -> dict[str, float]:
        from lvcd.pipeline import LVCDPipeline

        pipe = LVCDPipeline(model, device=device, fixed_placement=True)  # the modules are the training's
        rows = [
            score_frames(colorize_synthetic(pipe, shot, self.settings.steps, seed=index), shot)
            for index, shot in enumerate(self.shots)
        ]
        scores = mean_scores(rows)
        row = {"step": step, **{k: f"{scores[k]:.5g}" for k in SCORES}}
        for name, values in self.baselines.items():
            row.update({f"{name}_{k}": f"{values[k]:.5g}" for k in SCORES})
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(row)
        return scores


class TrainingEvaluation:
    """The sampling evaluation of ``[eval]`` with what it needs loaded once: the VAE and the frozen encoders."""

    def __init__(self, config, output_dir: Path, start_step: int):
        from lvcd.train.networks import resolve_model_config
        from lvcd.weights import load_model

        model_config = resolve_model_config(config.model)
        self.parts, _ = load_model(
            config.model.svd, None, config=model_config, parts=("clip", "cond_encoder", "first_stage"), strict=True
        )
        self.evaluator = SampleEvaluator(config.eval, tuple(config.data.size), output_dir, start_step)

    def has_row(self, step: int) -> bool:
        return self.evaluator.has_row(step)

    def run(self, net: LVCDModel, device: torch.device, step: int) -> dict[str, float]:
        self.parts.to(device)
        was_training = net.training
        net.eval()
        try:
            return self.evaluator(LVCDModel.from_parts(net, self.parts), device, step)
        finally:
            net.train(was_training)  # the net holds only the UNet and ControlNet, which set_trainable puts in train


def make_evaluator(config, output_dir: Path, start_step: int) -> TrainingEvaluation | None:
    """The evaluation of a run's ``[eval]`` section; None when ``eval.every`` is 0."""
    return TrainingEvaluation(config, output_dir, start_step) if config.eval.every > 0 else None
