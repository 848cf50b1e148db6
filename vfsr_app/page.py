"""The Gradio page of ``vfsr-app``: upload, model and options, a progress line fed by the pipeline, cancel, and the
result (input | restored video, before/after frames, face tracks, stability, report, downloads).

A job's id is kept in the browser (``gr.BrowserState``), so a reload shows the running job's progress and result."""
import json
import os
import re
import shutil
import tempfile
import time
from html import escape
from pathlib import Path

from vfsr_app.catalogue import background_files, missing_models_markdown, model_choices
from vfsr_app.jobs import FINISHED, Job, JobQueue
from vfsr_app.views import frame_pair, stability
from vfsr_restore import cli as restore_cli
from vfsr_restore.media import MediaError, probe

POLL_SECONDS = 0.4
DEMO_CLIP = Path('results/demo_restore/tiny_face.mp4')  # what make demo restores; made here when missing
CSS = '.vfsr-status progress {width: 100%} .vfsr-status[data-state=failed] {color: #b00020; font-weight: bold}'


class RestorePage:
    def __init__(self, args, work: Path, device: str):
        self.args, self.work, self.device = args, work, device
        self.queue = JobQueue(device, keep_seconds=args.keep_minutes * 60)
        self.choices = model_choices(args.weights_dir, args.demo_weights, args.demo_opt)
        self.backgrounds = background_files(args.weights_dir)
        self.defaults = restore_cli.build_parser().parse_args(['input', '-o', 'output'])

    # ------------------------------------------------------------------------------------------------ actions
    def submit(self, upload, model_label, upscale, faces, fidelity, precision, min_face_size, start, end,
               background):
        """Check the upload and the options, queue the job: (job id or None, status). An empty or 0 start or end
        means the video's own."""
        start, end = start or None, end or None
        try:
            if not upload:
                raise MediaError('choose a video or an image first (or the demo clip)')
            source = Path(upload)
            info = probe(source)
            seconds = self._seconds(info, start, end)
            if seconds > self.args.max_seconds:
                raise MediaError(f'{source.name}: {seconds:.1f} s to restore, the limit is {self.args.max_seconds:g} s '
                                 '(restore a part with start and end)')
            choice = next(choice for choice in self.choices if choice.label == model_label)
            if not choice.available:
                raise MediaError(f'{model_label}: {choice.weights} is missing; get it from {choice.published_at}')
        except (MediaError, StopIteration) as error:
            message = str(error) if isinstance(error, MediaError) else f'unknown model {model_label!r}'
            if upload:  # the name the person chose, not the server's upload folder
                message = message.replace(str(Path(upload).parent) + '/', '')
            return None, status_html('failed', f'failed: {message}')
        job_id = self.queue.new_id()
        folder = self.work / job_id
        folder.mkdir(parents=True)
        stem = re.sub(r'[^\w.-]', '_', source.stem)[:60] or 'input'
        job_input = folder / f'{stem}{source.suffix.lower()}'
        shutil.copyfile(source, job_input)
        suffix = '.png' if info.kind == 'image' else '.mp4'
        argv = [*choice.restore_args, '--upscale', str(int(upscale)), '--faces', faces.strip() or 'all',
                '--fidelity', str(fidelity), '--precision', precision, '--min-face-size', str(min_face_size)]
        argv += ['--start', str(start)] if start else []
        argv += ['--end', str(end)] if end else []
        argv += ['--background-weights', background] if background != 'Lanczos' else []
        job = Job(job_id, folder, job_input, folder / f'{stem}_restored{suffix}', argv,
                  after_restore=self._after_restore, span=(start, end))
        self.queue.submit(job)
        return job_id, self._status(job)

    @staticmethod
    def _seconds(info, start, end) -> float:
        if info.kind == 'image' or info.frame_count is None:
            return 0.0
        length = info.frame_count / float(info.rate)
        return max(0.0, min(length, end if end else length) - (start or 0))

    def _after_restore(self, job: Job) -> None:
        """Pictures and measures of a finished restore (in the worker, so that they count as the job's time)."""
        recorder = job.results.pop('tracks')
        job.results['thumbnails'] = recorder.thumbnails()
        start, end = job.span
        if job.report['kind'] == 'image':
            job.results['pair'] = frame_pair(job.input, job.output, 0, None, None)
            return
        job.progress.stage = 'first frames of input and result'
        job.results['pair'] = frame_pair(job.input, job.output, 0, start, end)
        if self.args.stability_frames:
            job.progress.stage = 'measuring the stability of input and result'
            job.results['stability'] = stability(job.input, job.output, start, end, self.args.stability_frames,
                                                 job.folder / 'flicker_slice.png', self.device)

    def cancel(self, job_id):
        job = self.queue.get(job_id)
        if job is None or job.state in FINISHED:
            return status_html('idle', 'no job is running')
        self.queue.cancel(job)
        return status_html('cancelling', 'cancelling...')

    def watch(self, job_id):
        """Status lines while the job waits or runs, then its results (a generator: one update per poll)."""
        import gradio as gr

        job = self.queue.get(job_id)
        if job is None:
            yield (status_html('expired', 'that job\'s files were removed; restore again') if job_id
                   else gr.skip(), *[gr.skip()] * 10)
            return
        yield self._status(job), *self._results(None)
        while job.state not in FINISHED:
            time.sleep(POLL_SECONDS)
            yield self._status(job), *[gr.skip()] * 10
        yield self._status(job), *self._results(job if job.state == 'done' else None)

    def show_frame(self, job_id, index):
        job = self.queue.get(job_id)
        if job is None or job.state != 'done' or job.report['kind'] == 'image':
            import gradio as gr
            return gr.skip()
        return frame_pair(job.input, job.output, int(index), *job.span)

    def demo_clip(self) -> str:
        """The clip ``make demo`` restores (160x120, a 20-pixel face moving, 48 frames, with audio); made here in
        the work folder when ``make demo`` has not run."""
        if DEMO_CLIP.is_file():
            return str(DEMO_CLIP)
        clip = self.work / 'demo' / DEMO_CLIP.name
        if not clip.is_file():
            from vfsr_face.synthetic_video import FacePath, VideoSpec, write_video

            clip.parent.mkdir(parents=True, exist_ok=True)
            partial = clip.with_name('.partial.mp4')
            write_video(partial, VideoSpec(160, 120, 48, 25, [FacePath(20, start=(0.35, 0.45), end=(0.65, 0.55))]))
            partial.replace(clip)
        return str(clip)

    # ------------------------------------------------------------------------------------------------ views
    def _status(self, job: Job) -> str:
        if job.state == 'queued':
            ahead = self.queue.position(job)
            return status_html('queued', f'waiting in the queue: {ahead} job{"s" * (ahead != 1)} before this one')
        if job.state == 'running':
            return status_html('running', job.progress.line(), job.progress.fraction)
        if job.state == 'failed':
            return status_html('failed', f'failed: {job.error}')
        if job.state == 'cancelled':
            return status_html('cancelled', 'cancelled; its files were removed')
        report = job.report
        text = f'done: {report["frames_out"]} frame{"s" * (report["frames_out"] != 1)}, ' \
               f'{len(report["tracks"])} face track{"s" * (len(report["tracks"]) != 1)}, {report["seconds"]:.1f} s'
        warnings = ''.join(f'<br>warning: {escape(warning)}' for warning in report['warnings'])
        return status_html('done', text, 1.0) + (f'<div class="vfsr-warnings">{warnings[4:]}</div>' if warnings else '')

    def _results(self, job: Job | None) -> list:
        """compare video, before/after, frame slider, tracks, video download, report download, stability text,
        flicker picture, report, image download."""
        import gradio as gr

        if job is None:
            return [None, None, gr.update(visible=False, value=0, maximum=1), None,
                    gr.update(visible=False, value=None), gr.update(visible=False, value=None), '', None, None,
                    gr.skip()]
        report = job.report
        video = report['kind'] != 'image'
        frames = report['frames_out']
        measures = job.results.get('stability')
        report_path = job.output.with_name(job.output.name + '.json')
        return [report['outputs'].get('compare'), job.results['pair'],
                gr.update(visible=video and frames > 1, value=0, maximum=max(frames - 1, 1)),
                job.results['thumbnails'],
                gr.update(visible=True, value=str(job.output),
                          label=f'Download the restored {"video" if video else "image"}'),
                gr.update(visible=True, value=str(report_path)), stability_markdown(measures),
                measures['picture'] if measures else None, json.loads(report_path.read_text()), gr.skip()]

    # ------------------------------------------------------------------------------------------------ layout
    def build(self):
        import gradio as gr

        defaults, args = self.defaults, self.args
        available = [choice.label for choice in self.choices if choice.available]
        with gr.Blocks(title='vfsr: restore faces', delete_cache=(600, int(args.keep_minutes * 60))) as blocks:
            job_id = gr.BrowserState(None, storage_key='vfsr-app-job')
            gr.Markdown('# vfsr: restore the faces of a video\nUpload a video or an image (recognised by its '
                        f'content; at most {args.max_upload_mb:g} MB and {args.max_seconds:g} s of video), choose '
                        'a model, press **Restore**. Frame count, timestamps, rotation and audio are kept. Nothing '
                        'leaves this machine and nothing is downloaded.')
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label='Video or image', elem_id='upload')
                    demo = gr.Button('Use the demo clip (a tiny face moving, 2 s)', elem_id='demo-clip', size='sm')
                    model = gr.Dropdown(available, value=available[0], label='Model', elem_id='model')
                    gr.Markdown(missing_models_markdown(self.choices), elem_id='missing-models')
                    with gr.Accordion('Options (defaults as vfsr-restore)', open=False):
                        upscale = gr.Slider(1, 8, value=defaults.upscale, step=1, label='Upscale (output size = '
                                            'input size x this)')
                        faces = gr.Textbox(defaults.faces, label='Faces: all, largest, center or track ids (1,3)')
                        fidelity = gr.Slider(0, 1, value=defaults.fidelity, step=0.05, label='Fidelity '
                                             '(CodeFormer: 1 closer to the input)')
                        precision = gr.Dropdown(['fp32', 'bf16', 'bf16-fast', 'fp16'], value=defaults.precision,
                                                label='Precision')
                        min_face_size = gr.Number(defaults.min_face_size, label='Smallest face (pixels)')
                        with gr.Row():
                            start = gr.Number(None, label='Start (s)', elem_id='start')
                            end = gr.Number(None, label='End (s)', elem_id='end')
                        background = gr.Dropdown(['Lanczos', *map(str, self.backgrounds)], value='Lanczos',
                                                 label='Background upscaling (Real-ESRGAN when its weights are in '
                                                 f'{args.weights_dir})')
                    with gr.Row():
                        run = gr.Button('Restore', variant='primary', elem_id='run')
                        cancel = gr.Button('Cancel', variant='stop', elem_id='cancel')
                    status = gr.HTML(status_html('idle', 'ready'), elem_id='status')
                with gr.Column(scale=2):
                    compare = gr.Video(label='Input | restored', elem_id='compare', autoplay=False, loop=True)
                    before_after = gr.ImageSlider(label='Before | after (drag the line)', elem_id='before-after',
                                                  type='numpy')
                    frame = gr.Slider(0, 1, value=0, step=1, label='Frame', visible=False, elem_id='frame')
                    tracks = gr.Gallery(label='Face tracks (input | restored)', elem_id='tracks', columns=4,
                                        height='auto')
                    with gr.Row():
                        download_video = gr.DownloadButton('Download the restored video', visible=False,
                                                           elem_id='download-video')
                        download_report = gr.DownloadButton('Download the report (JSON)', visible=False,
                                                            elem_id='download-report')
                    measures = gr.Markdown(elem_id='stability')
                    flicker = gr.Image(label='Flicker slice (a column of pixels over time: stripes are flicker)',
                                       elem_id='flicker', type='filepath')
                    report = gr.JSON(label='Report', elem_id='report')
            results = [compare, before_after, frame, tracks, download_video, download_report, measures, flicker,
                       report, upload]
            demo.click(self.demo_clip, outputs=upload)
            run.click(self.submit, [upload, model, upscale, faces, fidelity, precision, min_face_size, start, end,
                                    background], [job_id, status]).then(self.watch, job_id, [status, *results])
            cancel.click(self.cancel, job_id, status)
            frame.release(self.show_frame, [job_id, frame], before_after)
            blocks.load(self.watch, job_id, [status, *results])
        return blocks


def status_html(state: str, text: str, fraction: float | None = None) -> str:
    bar = '' if fraction is None else f'<progress value="{fraction:.3f}" max="1"></progress>'
    return f'<div class="vfsr-status" data-state="{state}">{bar}<span>{escape(text)}</span></div>'


def stability_markdown(measures: dict | None) -> str:
    if not measures:
        return ''
    lines = [f'**Stability** over the first {measures["frames"]} frames (lower is steadier; no ground truth '
             'needed): landmark jitter in % of the eye distance, warping error x 1000 (vfsr_eval, '
             'docs/evaluate.md)', '', '| | landmark jitter | warping error |', '|---|---|---|']
    lines += [f'| {name} | {measures[name]["landmark jitter"]} | {measures[name]["warping error"]} |'
              for name in ('input', 'restored')]
    return '\n'.join(lines)


def serve(args) -> int:
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    import gradio as gr

    try:
        device = restore_cli.resolve_device(args.device)
    except ValueError as error:
        print(f'vfsr-app: error: {error}')
        return 2
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix='vfsr-app-'))
    work.mkdir(parents=True, exist_ok=True)
    page = RestorePage(args, work.resolve(), device)
    blocks = page.build()
    blocks.queue(default_concurrency_limit=None)  # the job queue runs one restore at a time; watching is cheap
    theme = gr.themes.Default(font='sans-serif', font_mono='monospace')  # system fonts: no font download
    try:
        blocks.launch(server_name=args.host, server_port=args.port, max_file_size=int(args.max_upload_mb * 2 ** 20),
                      allowed_paths=[str(work.resolve()), str(DEMO_CLIP.parent.resolve())], theme=theme, css=CSS,
                      show_error=True, footer_links=[])
    except KeyboardInterrupt:
        pass
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0
