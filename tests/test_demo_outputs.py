"""What ``make demo`` leaves for a newcomer to open: validation images with their column titles burnt in, no second
copy of the last validation (BasicSR validates once more after training, as iteration total + 1 or + 2), the
overview picture small enough for a README, and the snapshots in ``vfsr-evaluate``'s layout.

demo.py's own functions run on PNG files laid out as BasicSR's validation writes them (``<clip>/<clip>_<iter>.png``
and ``_compare.png``, panels 96x128); tests/test_vidface_demo.py and the README's evaluation block
(tests/test_docs_blocks.py) run the whole demo."""
import cv2
import numpy as np
import pytest

import demo

PANEL = (128, 96)  # VidFace's GT size (h, w)


@pytest.fixture
def visualization(tmp_path, monkeypatch):
    """Two clips validated at iterations 2 and 4 (the run's last), then once more after training (5, same images)."""
    folder = tmp_path / 'visualization'
    monkeypatch.setattr(demo, 'VISUALIZATION', folder)
    monkeypatch.setattr(demo, 'OVERVIEW', tmp_path / 'demo_overview.png')
    monkeypatch.setattr(demo, 'EVALUATION_FRAMES', tmp_path / 'demo_frames')
    rng = np.random.default_rng(0)
    for clip in ('val000_0001', 'val001_0001'):
        (folder / clip).mkdir(parents=True)
        for iteration in (2, 4):
            compare = rng.integers(0, 200, (PANEL[0], 3 * PANEL[1], 3), dtype=np.uint8)
            cv2.imwrite(str(folder / clip / f'{clip}_{iteration}_compare.png'), compare)
            cv2.imwrite(str(folder / clip / f'{clip}_{iteration}.png'), compare[:, PANEL[1]:2 * PANEL[1]])
        for suffix in ('', '_compare'):
            last = (folder / clip / f'{clip}_4{suffix}.png').read_bytes()
            (folder / clip / f'{clip}_5{suffix}.png').write_bytes(last)
    return folder


def test_the_final_validation_is_not_kept_twice(visualization):
    demo.drop_final_validation_copies(total_iter=4)
    assert sorted(path.name for path in (visualization / 'val000_0001').iterdir()) == [
        'val000_0001_2.png', 'val000_0001_2_compare.png', 'val000_0001_4.png', 'val000_0001_4_compare.png']


def test_a_final_validation_without_its_twin_is_named_after_the_last_iteration(visualization):
    for path in visualization.glob('*/*_4*.png'):
        path.unlink()
    demo.drop_final_validation_copies(total_iter=4)
    assert sorted(path.name for path in (visualization / 'val001_0001').iterdir()) == [
        'val001_0001_2.png', 'val001_0001_2_compare.png', 'val001_0001_4.png', 'val001_0001_4_compare.png']


def test_compare_images_get_column_titles_once(visualization):
    before = cv2.imread(str(visualization / 'val000_0001' / 'val000_0001_4_compare.png'))
    for _ in range(2):  # a second pass (a rerun of the step) must not add a second strip
        compares = demo.label_visualization()
    assert len(compares) == 6
    after = cv2.imread(str(visualization / 'val000_0001' / 'val000_0001_4_compare.png'))
    assert after.shape == (before.shape[0] + 16, before.shape[1], 3)
    np.testing.assert_array_equal(after[16:], before)
    strip = after[:16]
    for column in range(3):  # each panel's title: dark text on white
        panel = strip[:, column * PANEL[1]:(column + 1) * PANEL[1]]
        assert (panel < 100).any() and (panel == 255).mean() > 0.5


def test_evaluation_frames_and_overview(visualization):
    demo.drop_final_validation_copies(total_iter=4)
    demo.write_evaluation_frames(total_iter=4)
    compare = cv2.imread(str(visualization / 'val001_0001' / 'val001_0001_4_compare.png'))
    for index, method in enumerate(('bicubic', 'VidFace', 'GT')):
        frames = sorted((demo.EVALUATION_FRAMES / method / 'demo_tufs_val').glob('*.png'))
        assert [path.name for path in frames] == ['val000_0001.png', 'val001_0001.png']
        np.testing.assert_array_equal(cv2.imread(str(frames[1])), compare[:, index * PANEL[1]:(index + 1) * PANEL[1]])
    demo.write_overview(demo.label_visualization())
    overview = cv2.imread(str(demo.OVERVIEW))
    assert overview.shape == (PANEL[0] + 16, 2 * 3 * PANEL[1], 3)  # the last iteration of each clip, side by side
    assert demo.OVERVIEW.stat().st_size < 100_000
