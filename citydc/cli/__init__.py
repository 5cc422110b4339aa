"""The ``citydc`` command line: one command, a group per concern."""
