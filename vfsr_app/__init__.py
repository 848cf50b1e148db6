"""``vfsr-app``: a local web page (Gradio) that restores the faces of a video or an image with vfsr-restore's
pipeline, shows the input and the result side by side with their stability, and offers both files for download."""
