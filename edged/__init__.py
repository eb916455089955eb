"""edged: the bifente edge daemon and the `bifente` command line."""
