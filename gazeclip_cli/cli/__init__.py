"""The command-line layer: parse, call the core, render. Only this layer imports typer or rich."""
