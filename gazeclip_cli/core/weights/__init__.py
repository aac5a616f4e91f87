"""Locating, checking, loading and fetching the pretrained weights GazeCLIP builds on.

Nothing here downloads at import or inside a model constructor; ``fetch`` downloads only
when the user asks for it on a connected machine.
"""
