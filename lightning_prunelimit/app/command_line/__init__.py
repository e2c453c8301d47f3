"""The command line: ``prunelimit``'s entry point, its signals and exit statuses."""
