"""The embedded synthetic benchmark behind ``gazeclip demo``: procedural faces with known gaze,
fake "generators" with learnable fingerprints, and a gaze estimator fitted on the renders."""
