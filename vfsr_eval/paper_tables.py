"""The papers' tables as data: every published cell, as printed, and where vfsr's own runs write the metrics of each
row (the metrics JSON of ``test.py`` or ``vfsr-evaluate``). Read by :mod:`vfsr_eval.tables`.

The cells are those of VidFace (Gan et al. 2021) Tables 1 and 2 and KEEP (Feng et al. 2024) Tables 1 and 3, copied
from the papers; ``tests/data/paper_tables.md`` holds the same cells as a Markdown copy of the papers' tables, and a
test compares what the tables command prints with it, cell by cell. KEEP's Table 3 also compares flow estimators;
those rows are not in our copy.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One column of a table: ``label`` as in the paper; ``metric`` the key in the metrics JSON (``val.metrics``
    name) whose value ``scale`` turns into the paper's unit, or None for a column of words (no figure of ours)."""

    label: str
    test_set: str = ''
    metric: str | None = None
    higher_is_better: bool = True
    scale: float = 1.0
    digits: int = 4


@dataclass(frozen=True)
class Row:
    """A method: its published cells (as printed, in column order) and, per test set, where our runs' metrics JSON
    may be (the first existing file is used; paths relative to the project root)."""

    method: str
    published: tuple[str, ...]
    runs: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PaperTable:
    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()


def psnr_ssim_columns(space: str, test_set: str, short: str) -> tuple[Column, Column]:
    suffix = '_y' if space == 'Y' else ''
    return (Column(f'{space} {short} PSNR', test_set, f'psnr{suffix}', digits=2),
            Column(f'{space} {short} SSIM', test_set, f'ssim{suffix}'))


TUFS, IJBC = 'TUFs-145K', 'IJB-C'
VIDFACE_RUNS = {TUFS: ('results/test_VidFace_TUFS145K/metrics_TUFS145K_test.json',
                       'experiments/train_VidFace_TUFS145K/metrics_TUFS145K_test.json'),
                IJBC: ('results/test_VidFace_IJBC/metrics_IJBC_test.json', )}
VIDFACE_AVERAGING = ('Averaging: the paper averages "on all the evaluation snapshots"; vfsr scores the reference '
                     'snapshot (im4) of each 7-snapshot clip and averages over clips.')

VIDFACE_TABLE_1 = PaperTable(
    key='vidface',
    title='VidFace Table 1: 8x video face hallucination, PSNR / SSIM on Y and in RGB',
    columns=tuple(column for space in ('Y', 'RGB') for test_set, short in ((TUFS, 'TUFs'), (IJBC, 'IJB-C'))
                  for column in psnr_ssim_columns(space, test_set, short)),
    rows=(
        Row('Bicubic', ('25.72', '0.7914', '23.86', '0.7029', '24.31', '0.7631', '22.44', '0.6647'),
            {TUFS: ('results/test_Bicubic_TUFS145K/metrics_TUFS145K_test.json', ),
             IJBC: ('results/test_Bicubic_IJBC/metrics_IJBC_test.json', )}),
        Row('EDVR', ('30.55', '0.9119', '26.05', '0.7968', '29.08', '0.8957', '24.59', '0.7675'),
            {TUFS: ('experiments/train_EDVRx8_TUFS145K/metrics_TUFS145K_test.json', )}),
        Row('MUCAN', ('30.49', '0.9113', '26.11', '0.7988', '29.00', '0.8949', '24.64', '0.7693')),
        Row('VidFace', ('30.94', '0.9181', '26.35', '0.8076', '29.46', '0.9026', '24.89', '0.7795'), VIDFACE_RUNS),
    ),
    notes=('Colour space: Y is BT.601 luma as BasicSR computes it (test_y_channel: psnr_y, ssim_y); RGB is psnr, '
           'ssim on the three channels.',
           VIDFACE_AVERAGING,
           'Split: TUFs-145K is the official test split; for IJB-C the paper does not publish its selection of '
           'sequences (ours: what make_ijbc writes).',
           'MUCAN is not implemented in vfsr; EDVR on IJB-C has no option file (give it with --run).'),
)

VIDFACE_TABLE_2 = PaperTable(
    key='vidface_ablation',
    title='VidFace Table 2: ablation on TUFs-145K, PSNR (dB)',
    columns=(Column('encoder'), Column('DeU'), Column('RLPE'), Column('PSNR', TUFS, 'psnr', digits=2)),
    rows=(
        Row('(A)', ('deformable conv', 'no', 'no', '29.08')),
        Row('(B)', ('T2T transformer', 'no', 'no', '29.23')),
        Row('VidFace', ('T2T transformer', 'yes', 'yes', '29.46'), VIDFACE_RUNS),
    ),
    notes=('Colour space: RGB (the paper does not say; 29.46 is the RGB TUFs-145K figure of its Table 1).',
           VIDFACE_AVERAGING,
           'Variants (A) and (B) have no option file in vfsr: give their metrics JSON with --run.'),
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


def keep_row(method: str, cells: str, *extra_runs: str) -> Row:
    """A row of KEEP Table 1; ``vfsr-evaluate --output evaluation/VFHQ-Test`` writes the last place looked at."""
    runs = (*extra_runs, f'evaluation/VFHQ-Test/metrics_{method}.json')
    return Row(method, tuple(cells.split()), {'VFHQ-Test': runs})


KEEP_ROW = keep_row('KEEP', '27.9994 0.8267 0.1619 0.7960 8.8182 3.6866 3.2538',
                    'results/test_keep_vfhq/metrics_VFHQ-Test-easy.json')
KEEP_NOTES = (
    'Colour space: the paper does not say whether PSNR / SSIM are on Y or RGB; ours are on RGB (psnr, ssim).',
    'Split: the paper does not say which degradation level (or all) its Table 1 uses; the official KEEP code '
    'defines only VFHQ-Test "easy" (blur sigma 5-10, noise 0-10, CRF 18-25), which the default runs use; see '
    'docs/evaluate.md for the medium / heavy presets.',
    'sigma scale: ours sigma_IDS x100 (the paper prints values such as 3.69 next to IDS 0.80, which only a '
    'percentage of a cosine similarity can be; assumed); sigma_AKD unscaled, in pixels.',
    'Averaging: the paper does not say how frames and clips are averaged; ours: each frame metric averaged over '
    'the clip\'s frames, each sigma over one clip, then the mean over clips (each clip counts once).',
    'AKD / sigma_AKD: pixels of the 512x512 aligned face with our landmark detector (MTCNN 5 points by default); '
    'the paper names neither its detector nor its ArcFace (IDS) nor its LPIPS trunk (ours VGG), so these columns '
    'compare only roughly.',
)

KEEP_TABLE_1 = PaperTable(
    key='keep',
    title='KEEP Table 1: VFHQ-Test, x4 blind video face super-resolution',
    columns=KEEP_COLUMNS,
    rows=(
        keep_row('GPEN', '25.5193 0.7517 0.2988 0.7142 11.4691 4.7416 3.5109'),
        keep_row('GFPGAN', '26.2933 0.7795 0.2482 0.7437 10.5467 4.5700 3.6482'),
        keep_row('RestoreFormer', '25.5720 0.7344 0.3195 0.7530 10.5354 4.7159 3.4122'),
        keep_row('CodeFormer', '24.6597 0.7454 0.2742 0.6272 11.4983 6.3726 3.6927',
                 'results/test_codeformer_vfhq/metrics_VFHQ-Test-easy.json'),
        keep_row('EDVR', '26.6051 0.7858 0.2484 0.7195 11.6220 4.8048 3.5829',
                 'experiments/train_EDVR_VFHQ/metrics_VFHQ-Test-easy.json'),
        keep_row('BasicVSR', '26.0458 0.7765 0.2496 0.6973 11.3679 5.0343 3.6054',
                 'experiments/train_BasicVSR_VFHQ/metrics_VFHQ-Test-easy.json'),
        keep_row('BasicVSR++', '27.1996 0.8057 0.1958 0.7641 11.3136 5.2543 4.6425',
                 'experiments/train_BasicVSRPP_VFHQ/metrics_VFHQ-Test-easy.json'),
        KEEP_ROW,
    ),
    notes=(*KEEP_NOTES,
           'GPEN, GFPGAN and RestoreFormer are not implemented in vfsr: score their restored clips with '
           'vfsr-evaluate --output evaluation/VFHQ-Test (metrics_<method>.json is read) or give them with --run.'),
)

KEEP_TABLE_3 = PaperTable(
    key='keep_ablation',
    title='KEEP Table 3: ablation on VFHQ-Test',
    columns=tuple(column for column in KEEP_COLUMNS if column.label in ('LPIPS', 'IDS', 'AKD')),
    rows=(
        Row('w/o CFA', ('0.1621', '0.7970', '8.9029')),
        Row('w/o KFN', ('0.1721', '0.7773', '9.1952')),
        Row('full model', ('0.1619', '0.7960', '8.8182'), KEEP_ROW.runs),
    ),
    notes=('Settings as in KEEP Table 1 (its notes apply). The full model is KEEP\'s run; the variants without '
           'cross-frame attention (CFA) or the Kalman filter network (KFN) have no option file in vfsr: give their '
           'metrics JSON with --run. The paper\'s rows comparing flow estimators are not in our copy of the table.',),
)

PAPER_TABLES = {table.key: table for table in (VIDFACE_TABLE_1, VIDFACE_TABLE_2, KEEP_TABLE_1, KEEP_TABLE_3)}
