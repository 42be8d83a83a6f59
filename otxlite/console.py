"""The shared rich console (stdout) and error console (stderr)."""

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
