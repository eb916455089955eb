"""The daemon's version, importable without the daemon (`edged --version`, the early advert)."""

VERSION = "0.1.0"
