"""The verbs, one module each: run folders, progress and results of train, eval, export, optimize, predict,
explain, benchmark, find and serve. The CLI (``otxlite.cli``) parses and renders; these do the work."""
