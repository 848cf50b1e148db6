"""vfsr: video face super-resolution (VidFace, KEEP) as a BasicSR plugin."""
from setuptools import find_packages, setup

setup(
    name='vfsr',
    version='0.1.0',
    description='Video face super-resolution (VidFace, KEEP) as a BasicSR plugin',
    license='Apache-2.0',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['vfsr_arch', 'vfsr_data', 'vfsr_models', 'vfsr_restore', 'vfsr_eval',
                                    'datasets_prep', 'vfsr_app', 'vfsr_io', 'vfsr_face']),
    py_modules=['vfsr_compat', 'vfsr_registry', 'vfsr_cli'],
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'basicsr==1.4.2',
        'facexlib>=0.3.0',
        'numpy',
        'opencv-python',
        'scikit-image',
        'lmdb',
        'pyyaml',
        'tqdm',
        'av',
        'tb-nightly',
        'matplotlib',  # vfsr-evaluate --plot (already pulled in by facexlib's filterpy; torch untouched)
    ],
    # app: vfsr-app's page (Gradio) and its browser tests (Playwright, driving the system's Chromium)
    extras_require={'test': ['pytest', 'ruff'], 'app': ['gradio', 'playwright']},
    entry_points={'console_scripts': ['vfsr-train=vfsr_cli:train_main', 'vfsr-test=vfsr_cli:test_main',
                                      'vfsr-restore=vfsr_restore.cli:entry_point',
                                      'vfsr-evaluate=vfsr_eval.evaluate:console_main',
                                      'vfsr-app=vfsr_app.cli:entry_point']},
)
