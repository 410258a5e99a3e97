"""The ``warden`` command line: Typer commands over the same service objects the server uses."""
