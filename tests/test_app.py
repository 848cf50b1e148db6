"""vfsr-app in a real browser: the suite starts the page on a free local port in its own process and drives
Chromium (Debian's ``chromium``, through Playwright's ``executable_path``: no browser download) as a person would.

One server and one browser serve all the tests of this file (a few seconds to start); each test opens its own
pages. The restores are small (160x120 clips of one to a few seconds) so the file runs in about a minute on 2 cores.
CI (.ci/run) installs chromium and sets VFSR_REQUIRE_BROWSER=1, so there these tests fail instead of skipping.
Set VFSR_APP_SCREENSHOT=1 to refresh docs/images/app.png from the identity test."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO_ROOT

from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video

pytest.importorskip('gradio', reason='vfsr-app needs the app extra: pip install -e ".[app]"')
playwright_api = pytest.importorskip('playwright.sync_api', reason='pip install -e ".[app]"')

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
if CHROMIUM is None:
    if os.environ.get('VFSR_REQUIRE_BROWSER'):
        raise RuntimeError('VFSR_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)')
    pytest.skip('no chromium on this machine (apt-get install chromium)', allow_module_level=True)

RESTORE_TIMEOUT_MS = 180_000
DEMO_LABEL = 'vidface (demo, make demo)'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def demo_sized_vidface(path: Path) -> None:
    """A demo-sized VidFace (options/demo_vidface.yml's network) with random weights, saved as training saves it."""
    import vfsr_compat  # noqa: F401  (before basicsr)

    from basicsr.utils.registry import ARCH_REGISTRY

    import vfsr_arch  # noqa: F401  (registers VidFace)

    network_opt = dict(yaml.safe_load((REPO_ROOT / 'options' / 'demo_vidface.yml').read_text())['network_g'])
    torch.manual_seed(0)
    network = ARCH_REGISTRY.get(network_opt.pop('type'))(**network_opt)
    torch.save({'params': network.state_dict()}, path)


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """(url, work folder) of a vfsr-app serving in its own process."""
    root = tmp_path_factory.mktemp('app')
    demo_sized_vidface(root / 'demo_vidface.pth')
    work, port = root / 'work', free_port()
    command = [sys.executable, '-m', 'vfsr_app.cli', '--port', str(port), '--work-dir', str(work), '--weights-dir',
               str(root / 'weights'), '--demo-weights', str(root / 'demo_vidface.pth'), '--demo-opt',
               str(REPO_ROOT / 'options' / 'demo_vidface.yml'), '--stability-frames', '16', '--device', 'cpu']
    log = open(root / 'server.log', 'w')
    process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, 'OMP_NUM_THREADS': '1'})
    url = f'http://127.0.0.1:{port}/'
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f'vfsr-app did not start: {(root / "server.log").read_text()[-2000:]}')
            time.sleep(0.5)
    yield url, work
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope='module')
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
        yield chromium
        chromium.close()


def face_clip(path: Path, frames: int = 20) -> Path:
    write_video(path, VideoSpec(160, 120, frames, 25, [FacePath(40)], audio_rate=16000))
    return path


def open_page(browser, url):
    page = browser.new_page(accept_downloads=True)
    page.goto(url)
    page.wait_for_selector('#status [data-state]')
    return page


def upload(page, path: Path) -> None:
    shown = page.locator('#upload button[aria-label=Clear]')
    if shown.count():  # a file is there already: remove it as a person would
        shown.click()
    page.locator('#upload input[type=file]').set_input_files(str(path))
    wait_for_file_shown(page, path.name)


def wait_for_file_shown(page, name: str) -> None:
    """Until the upload box shows the file ``name`` with its download link (uploaded)."""
    page.wait_for_function('name => { const text = document.querySelector("#upload").textContent.replace(/\\s/g, "");'
                           ' return text.includes(name) && text.includes("⇣"); }', arg=name)


def restore(page, state: str = 'done', timeout: float = RESTORE_TIMEOUT_MS):
    before = page.locator('#status .vfsr-status').evaluate('status => status.outerHTML')
    page.click('#run')
    page.wait_for_function('before => { const status = document.querySelector("#status .vfsr-status"); return '
                           'status.outerHTML !== before && ["done", "failed", "cancelled"].includes('
                           'status.dataset.state); }', arg=before, timeout=timeout)
    assert page.get_attribute('#status [data-state]', 'data-state') == state, page.inner_text('#status')
    return page.inner_text('#status')


def download(page, button: str, folder: Path) -> Path:
    with page.expect_download() as event:
        page.click(button)
    path = folder / event.value.suggested_filename
    event.value.save_as(path)
    return path


def video_frames(path: Path) -> tuple[list[np.ndarray], list[Fraction]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [(frame.to_ndarray(format='rgb24'), frame.pts * stream.time_base) for frame in
                   container.decode(stream)]
    return [image for image, _ in decoded], [time for _, time in decoded]


def audio_samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray() for frame in container.decode(container.streams.audio[0])], 1)


def test_identity_restore_downloads_the_input_frames_timestamps_and_audio(server, browser, tmp_path):
    url, _ = server
    source = face_clip(tmp_path / 'speaker.mp4')
    page = open_page(browser, url)
    assert page.input_value('#model input').startswith('identity')
    assert 'KEEP-b76feb75.pth' in page.inner_text('#missing-models'), 'a missing model names its file'
    upload(page, source)
    status = restore(page)
    assert 'done: 20 frames, 1 face track' in status
    video = download(page, '#download-video', tmp_path)
    report = json.loads(download(page, '#download-report', tmp_path).read_text())
    assert video.name == 'speaker_restored.mp4' and report['frames_out'] == 20 and list(report['tracks']) == ['1']

    frames_in, times_in = video_frames(source)
    frames_out, times_out = video_frames(video)
    assert times_out == times_in
    difference = np.abs(np.stack(frames_out).astype(float) - np.stack(frames_in)).mean()
    assert difference < 2, f'identity pastes the face back where it was (mean difference {difference:.2f})'
    audio_in, audio_out = audio_samples(source), audio_samples(video)
    assert audio_out.shape == audio_in.shape and np.abs(audio_out - audio_in).max() < 1e-4

    page.wait_for_selector('#tracks img')
    assert page.locator('#tracks img').count() == 1, 'one thumbnail per face track'
    assert 'landmark jitter' in page.inner_text('#stability')
    page.wait_for_selector('#flicker img')
    page.wait_for_selector('#compare video')
    if os.environ.get('VFSR_APP_SCREENSHOT'):
        page.screenshot(path=str(REPO_ROOT / 'docs' / 'images' / 'app.png'), full_page=True)
    page.reload()
    page.wait_for_selector('#status [data-state=done]')
    page.wait_for_selector('#download-video', state='visible')
    page.close()


def test_bad_uploads_are_one_clear_line_and_the_demo_vidface_runs(server, browser, tmp_path):
    url, _ = server
    page = open_page(browser, url)
    not_video = tmp_path / 'notes.mp4'
    not_video.write_text('these are not frames')
    upload(page, not_video)
    assert 'failed: notes.mp4: not a video or image PyAV can read' in restore(page, 'failed')
    truncated = tmp_path / 'cut.mp4'
    truncated.write_bytes(face_clip(tmp_path / 'whole.mp4').read_bytes()[:1500])
    upload(page, truncated)
    assert 'failed: cut.mp4: not a video or image PyAV can read' in restore(page, 'failed')

    page.click('#demo-clip')
    wait_for_file_shown(page, 'tiny_face.mp4')
    page.locator('#model input').fill(DEMO_LABEL)
    page.get_by_role('option', name=DEMO_LABEL).click()
    page.get_by_text('Options (defaults as vfsr-restore)').click()
    page.get_by_label('Smallest face (pixels)').fill('12')
    status = restore(page)
    assert 'done: 48 frames, 1 face track' in status
    report = json.loads(download(page, '#download-report', tmp_path).read_text())
    assert report['model'] == 'vidface' and report['faces_restored'] > 0
    page.close()


def test_two_pages_share_the_queue_and_cancel_leaves_nothing(server, browser, tmp_path):
    url, work = server
    first, second = open_page(browser, url), open_page(browser, url)
    long_clip = face_clip(tmp_path / 'long.mp4', frames=1000)
    upload(first, long_clip)
    upload(second, face_clip(tmp_path / 'short.mp4'))
    first.click('#run')
    first.wait_for_selector('#status [data-state=running] >> text=/frame [1-9]/', timeout=60_000)
    second.click('#run')
    second.wait_for_selector('#status [data-state=queued] >> text=1 job before this one')
    folders = {path.name for path in work.iterdir()}
    first.click('#cancel')
    first.wait_for_selector('#status [data-state=cancelled]', timeout=60_000)
    second.wait_for_selector('#status [data-state=done]', timeout=RESTORE_TIMEOUT_MS)
    left = {path.name for path in work.iterdir()}
    assert len(left & folders) == len(folders) - 1, 'the cancelled job left no folder'
    assert not [path for path in work.rglob('*') if 'long' in path.name], 'nothing of the cancelled job is left'
    first.close()
    second.close()
