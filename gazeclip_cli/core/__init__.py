"""The GazeCLIP core: network, weights, data, training, evaluation and inference.

Nothing here prints, exits or touches CUDA at import; results are dataclasses and
failures are :class:`gazeclip_cli.core.errors.GazeclipError` subclasses.
"""
