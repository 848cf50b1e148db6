"""Named metric sets for ``vfsr-evaluate --metrics``, in ``val.metrics`` form (name -> options). The names are the
keys the tables command reads (:mod:`vfsr_eval.paper_tables`). Weights are read from their default paths under
``weights/`` (see docs/evaluate.md); a YAML file with a ``metrics:`` mapping replaces them with any choice."""

PSNR_SSIM = {
    'psnr': dict(type='calculate_psnr', crop_border=0, test_y_channel=False),
    'ssim': dict(type='calculate_ssim', crop_border=0, test_y_channel=False),
    'psnr_y': dict(type='calculate_psnr', crop_border=0, test_y_channel=True),
    'ssim_y': dict(type='calculate_ssim', crop_border=0, test_y_channel=True),
}
# KEEP Table 1 on aligned 512x512 VFHQ-Test faces.
KEEP = {
    'psnr': PSNR_SSIM['psnr'],
    'ssim': PSNR_SSIM['ssim'],
    'lpips': dict(type='calculate_lpips', net='vgg'),
    'ids': dict(type='calculate_ids', face_crop='ffhq'),
    'akd': dict(type='calculate_akd', detector='mtcnn'),
    'sigma_ids': dict(type='calculate_sigma_ids', face_crop='ffhq'),
    'sigma_akd': dict(type='calculate_sigma_akd', detector='mtcnn'),
}
# Reference-free temporal metrics: also for real videos with no ground truth.
TEMPORAL = {
    'warping_error': dict(type='calculate_warping_error', flow='dis'),
    'landmark_jitter': dict(type='calculate_landmark_jitter', detector='mtcnn'),
}
METRIC_PRESETS = {
    'psnr_ssim': PSNR_SSIM,
    'vidface': {'psnr_y': PSNR_SSIM['psnr_y'], 'ssim_y': PSNR_SSIM['ssim_y']},
    'keep': KEEP,
    'temporal': TEMPORAL,
    'all': {**PSNR_SSIM, **KEEP, **TEMPORAL},
}
