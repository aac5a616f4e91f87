"""gazeclip: GazeCLIP deepfake attribution and detection of face images.

The package has two layers: ``gazeclip_cli.core`` holds the network, data, training,
evaluation and inference and never prints; ``gazeclip_cli.cli`` parses arguments, calls
the core and renders its results.
"""

__version__ = "0.1.0"
