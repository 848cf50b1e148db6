"""Audio through vfsr-restore's --start/--end: the output's audio decodes to the kept span, in sync, to one audio
frame, whether the input's audio is copied (AAC and Opus with the encoder's priming, PCM without) or re-encoded."""
import av
import numpy as np
import pytest

from vfsr_restore.cli import main

SECONDS, FPS = 2, 25
START, END = 0.6, 1.4


def chirp(rate: int) -> np.ndarray:
    """A tone sweeping 200 -> 2000 Hz over the clip: each moment has its own pitch, so a lag is unambiguous."""
    times = np.arange(SECONDS * rate) / rate
    return (0.3 * np.sin(2 * np.pi * (200 * times + 450 * times ** 2))).astype(np.float32)


def write_clip(path, audio_codec: str, rate: int, sample_format: str) -> None:
    """A 2 s, 64x48 video without faces and a mono chirp in ``audio_codec``."""
    with av.open(str(path), 'w') as container:
        video = container.add_stream('libx264', rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, 'yuv420p'
        audio = container.add_stream(audio_codec, rate=rate, layout='mono')
        for index in range(SECONDS * FPS):
            image = np.full((48, 64, 3), 4 * index, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format='rgb24')))
        container.mux(video.encode())
        tone, step = chirp(rate), audio.codec_context.frame_size or 1024
        for offset in range(0, tone.size, step):
            samples = tone[None, offset:offset + step]
            if sample_format == 's16':
                samples = (samples * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=sample_format, layout='mono')
            frame.sample_rate, frame.pts = rate, offset
            container.mux(audio.encode(frame))
        container.mux(audio.encode())


def decoded_audio(path) -> tuple[np.ndarray, int, int]:
    """Mono float samples as a player gets them (edit lists and priming applied), the rate, the frame size."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
        rate = stream.codec_context.sample_rate
    samples = np.concatenate([frame.to_ndarray().reshape(-1).astype(np.float64) for frame in frames])
    if frames[0].format.name.startswith('s16'):
        samples /= 32768
    return samples, rate, max(frame.samples for frame in frames)


@pytest.mark.parametrize('input_name, audio_codec, rate, sample_format, output_name, copied', [
    ('aac.mp4', 'aac', 16000, 'fltp', 'out.mp4', True),  # mp4: an edit list hides AAC's priming
    ('aac.mkv', 'aac', 16000, 'fltp', 'out.mp4', True),  # Matroska: no edit list
    ('opus.mkv', 'libopus', 48000, 'flt', 'out.mp4', True),
    ('pcm.mov', 'pcm_s16le', 8000, 's16', 'out.mov', True),
    ('pcm.mkv', 'pcm_s16le', 8000, 's16', 'out.mp4', False),  # mp4 holds no PCM: re-encoded to AAC
])
def test_trimmed_audio_decodes_to_the_kept_span_in_sync(tmp_path, input_name, audio_codec, rate, sample_format,
                                                        output_name, copied):
    source, output = tmp_path / input_name, tmp_path / output_name
    write_clip(source, audio_codec, rate, sample_format)
    arguments = [str(source), '-o', str(output), '--model', 'identity', '--no-progress', '--start', str(START),
                 '--end', str(END)]
    if copied:
        assert main(arguments) == 0
    else:
        with pytest.warns(UserWarning, match='re-encoding'):
            assert main(arguments) == 0
    with av.open(str(output)) as container:
        assert (container.streams.audio[0].codec_context.name == audio_codec.removeprefix('lib')) == copied
    reference, reference_rate, _ = decoded_audio(source)
    kept, kept_rate, frame_size = decoded_audio(output)
    assert kept_rate == reference_rate
    assert abs(kept.size - (END - START) * kept_rate) <= frame_size
    # where the output's first 1000 samples are in the input: at --start, to a millisecond
    probe = kept[:1000]
    scores = np.correlate(reference, probe, mode='valid') / np.sqrt(
        np.convolve(reference ** 2, np.ones(probe.size), mode='valid') * (probe ** 2).sum() + 1e-12)
    assert abs(int(np.argmax(scores)) - START * kept_rate) <= kept_rate / 1000
    assert scores.max() > 0.9


def test_the_whole_clip_keeps_every_sample(tmp_path):
    source, output = tmp_path / 'aac.mp4', tmp_path / 'out.mp4'
    write_clip(source, 'aac', 16000, 'fltp')
    assert main([str(source), '-o', str(output), '--model', 'identity', '--no-progress']) == 0
    reference, _, _ = decoded_audio(source)
    kept, _, _ = decoded_audio(output)
    assert kept.size == reference.size and np.array_equal(kept, reference)
