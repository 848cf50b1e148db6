"""The models the page offers: which can run here (their weights are present) and, for the others, which file is
missing and where it is published. Nothing is downloaded."""
from dataclasses import dataclass
from pathlib import Path

from vfsr_restore.restorers import OFFICIAL_MODELS, restorer_weights

DEMO_LABEL = 'vidface (demo, make demo)'
LABELS = {'keep': 'keep (KEEP, video)', 'keep-asian': 'keep-asian (KEEP, Asian faces)',
          'codeformer': 'codeformer (CodeFormer, per frame)', 'vidface': 'vidface (VidFace, tiny faces, 8x)'}
REALESRGAN_FILES = ('RealESRGAN_x4plus.pth', 'RealESRGAN_x2plus.pth')


@dataclass
class ModelChoice:
    """One entry of the model list; ``restore_args``: its vfsr-restore arguments."""
    label: str
    restore_args: list[str]
    weights: Path | None  # None: needs no file
    published_at: str | None

    @property
    def available(self) -> bool:
        return self.weights is None or self.weights.is_file()


def model_choices(weights_dir: str, demo_weights: str, demo_opt: str) -> list[ModelChoice]:
    """identity first (no weights), the demo VidFace, then the official models."""
    choices = [ModelChoice('identity (geometry check, no network)', ['--model', 'identity'], None, None),
               ModelChoice(DEMO_LABEL, ['--model', 'vidface', '--opt', demo_opt, '--weights', demo_weights],
                           Path(demo_weights), '`make demo` (trains it on the CPU in a few minutes)')]
    for model in OFFICIAL_MODELS:
        weights, published_at = restorer_weights(model, None, weights_dir)
        choices.append(ModelChoice(LABELS[model], ['--model', model, '--weights-dir', weights_dir], weights,
                                   published_at))
    return choices


def background_files(weights_dir: str) -> list[Path]:
    """The Real-ESRGAN weights present (vfsr-restore --background-weights), where README's set-up puts them."""
    folders = [Path(weights_dir), Path(weights_dir) / 'RealESRGAN']
    return [folder / name for folder in folders for name in REALESRGAN_FILES if (folder / name).is_file()]


def missing_models_markdown(choices: list[ModelChoice]) -> str:
    missing = [choice for choice in choices if not choice.available]
    if not missing:
        return 'All models are available.'
    lines = ['Not available here (vfsr never downloads; put the file in place and restart the page):']
    lines += [f'- **{choice.label}**: `{choice.weights}` is missing; get it from {choice.published_at}'
              for choice in missing]
    return '\n'.join(lines)
