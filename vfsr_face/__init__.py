"""Ground floor: faces in images, for every capability (restore, evaluation, data preparation): detection backends
with five landmarks, face parsing masks, and the astronaut photograph with its landmarks (the TUFs snapshot
template)."""
