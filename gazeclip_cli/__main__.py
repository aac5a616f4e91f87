"""``python -m gazeclip_cli`` runs the command-line tool."""

from gazeclip_cli.cli.app import main

main()
