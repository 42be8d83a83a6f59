# The two commands of the README. Both set up .venv first (idempotent: a second run reuses it).
.PHONY: setup demo test

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q
