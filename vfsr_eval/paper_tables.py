"""The papers' tables as data: their columns, their rows with the published numbers, and where vfsr's own runs
write the metrics of each row (the metrics JSON of ``test.py`` or ``vfsr-evaluate``). Read by
:mod:`vfsr_eval.tables`.

Published numbers, copied from the papers:

* VidFace (Gan et al. 2021), Table 1, PSNR / SSIM on the Y channel of the reference snapshot (128x96):
  TUFs-145K Bicubic 25.72 / 0.7914, EDVR 30.55, MUCAN 30.49, VidFace 30.94; IJB-C Bicubic 23.86 / 0.7029 (source:
  the project's checked notes, ../shared/README.md). The other cells (SSIM of EDVR, MUCAN, VidFace; their IJB-C
  figures) print as "—": a search of the stored public sources (arXiv 2105.14954 abstract pages, the official
  repository yuangan/VidFace, pages citing the paper) found no text stating them. Copy them from the paper itself,
  naming it, rather than from a secondary source.
* KEEP (Feng et al. 2024), Table 1, VFHQ-Test, aligned 512x512 faces: PSNR, SSIM, LPIPS, IDS, AKD, sigma_IDS,
  sigma_AKD for KEEP, BasicVSR++, EDVR and CodeFormer.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One figure of a table: ``metric`` is the key in the metrics JSON (``val.metrics`` name), ``scale``
    multiplies our value to the paper's unit."""

    label: str
    test_set: str
    metric: str
    higher_is_better: bool = True
    scale: float = 1.0
    digits: int = 4


@dataclass(frozen=True)
class Row:
    """A method: its published figures (column label -> value) and, per test set, where our runs' metrics JSON
    may be (the first existing file is used; paths relative to the project root)."""

    method: str
    published: dict[str, float]
    runs: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PaperTable:
    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()


def tufs_columns(test_set: str, short: str) -> tuple[Column, Column]:
    return (Column(f'{short} PSNR', test_set, 'psnr_y', digits=2), Column(f'{short} SSIM', test_set, 'ssim_y'))


VIDFACE_TABLE_1 = PaperTable(
    key='vidface',
    title='VidFace Table 1: 8x video face hallucination (PSNR / SSIM on Y)',
    columns=(*tufs_columns('TUFs-145K', 'TUFs-145K'), *tufs_columns('IJB-C', 'IJB-C')),
    rows=(
        Row('Bicubic', {'TUFs-145K PSNR': 25.72, 'TUFs-145K SSIM': 0.7914, 'IJB-C PSNR': 23.86, 'IJB-C SSIM': 0.7029},
            {'TUFs-145K': ('results/test_Bicubic_TUFS145K/metrics_TUFS145K_test.json', ),
             'IJB-C': ('results/test_Bicubic_IJBC/metrics_IJBC_test.json', )}),
        Row('EDVR', {'TUFs-145K PSNR': 30.55},
            {'TUFs-145K': ('experiments/train_EDVRx8_TUFS145K/metrics_TUFS145K_test.json', )}),
        Row('MUCAN', {'TUFs-145K PSNR': 30.49}),  # not implemented in vfsr: always missing
        Row('VidFace', {'TUFs-145K PSNR': 30.94},
            {'TUFs-145K': ('results/test_VidFace_TUFS145K/metrics_TUFS145K_test.json',
                           'experiments/train_VidFace_TUFS145K/metrics_TUFS145K_test.json'),
             'IJB-C': ('results/test_VidFace_IJBC/metrics_IJBC_test.json', )}),
    ),
    notes=('MUCAN is not implemented in vfsr.',),
)

KEEP_COLUMNS = (
    Column('PSNR', 'VFHQ-Test', 'psnr'),
    Column('SSIM', 'VFHQ-Test', 'ssim'),
    Column('LPIPS', 'VFHQ-Test', 'lpips', higher_is_better=False),
    Column('IDS', 'VFHQ-Test', 'ids'),
    Column('AKD', 'VFHQ-Test', 'akd', higher_is_better=False),
    Column('sigma_IDS', 'VFHQ-Test', 'sigma_ids', higher_is_better=False, scale=100),
    Column('sigma_AKD', 'VFHQ-Test', 'sigma_akd', higher_is_better=False),
)


def keep_row(method: str, values: tuple[float, ...], *extra_runs: str) -> Row:
    runs = (*extra_runs, f'evaluation/VFHQ-Test/metrics_{method}.json')
    return Row(method, {column.label: value for column, value in zip(KEEP_COLUMNS, values)}, {'VFHQ-Test': runs})


KEEP_TABLE_1 = PaperTable(
    key='keep',
    title='KEEP Table 1: VFHQ-Test, x4 blind video face super-resolution',
    columns=KEEP_COLUMNS,
    rows=(
        keep_row('EDVR', (26.6051, 0.7858, 0.2484, 0.7195, 11.6220, 4.8048, 3.5829),
                 'experiments/train_EDVR_VFHQ/metrics_VFHQ-Test-easy.json'),
        keep_row('BasicVSR++', (27.1996, 0.8057, 0.1958, 0.7641, 11.3136, 5.2543, 4.6425),
                 'experiments/train_BasicVSRPP_VFHQ/metrics_VFHQ-Test-easy.json'),
        keep_row('CodeFormer', (24.6597, 0.7454, 0.2742, 0.6272, 11.4983, 6.3726, 3.6927),
                 'results/test_codeformer_vfhq/metrics_VFHQ-Test-easy.json'),
        keep_row('KEEP', (27.9994, 0.8267, 0.1619, 0.7960, 8.8182, 3.6866, 3.2538),
                 'results/test_keep_vfhq/metrics_VFHQ-Test-easy.json'),
    ),
    notes=('sigma_IDS: ours x100 (the paper prints values such as 3.69 next to IDS 0.80, which only a percentage of '
           'a cosine similarity can be; assumed).',
           'AKD / sigma_AKD: pixels of the 512x512 aligned face with our landmark detector (MTCNN 5 points by '
           'default); the paper does not name its detector, so these columns compare only roughly.',
           'Test split: the official KEEP code defines only VFHQ-Test "easy" (blur sigma 5-10, noise 0-10, CRF '
           '18-25); see docs/evaluate.md for the medium/heavy presets.'),
)

PAPER_TABLES = {table.key: table for table in (VIDFACE_TABLE_1, KEEP_TABLE_1)}
