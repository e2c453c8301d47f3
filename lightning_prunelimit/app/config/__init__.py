"""The config: where ``conf/`` is, building its nodes, checking a composed config before a run."""
