"""Forensic inference: the predictor, provenance, Grad-CAM, the HTML report and the folder scan."""
