"""Coverage-guided fuzz harnesses (atheris), one per parser; see docs/reliability.md."""
