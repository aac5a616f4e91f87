"""Data: the benchmark protocol and manifest, image and video loading, faces, gaze normalisation, preprocessing."""
