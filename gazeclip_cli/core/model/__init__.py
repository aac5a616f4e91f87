"""The GazeCLIP network: configuration, parts, builder, model folders, model-info."""
