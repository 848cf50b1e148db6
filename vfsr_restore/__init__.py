"""vfsr_restore: restore faces in real videos (``vfsr-restore``): media I/O, face detection, tracking, smoothing,
alignment, compositing and the streaming restore loop, one concept per module."""
