"""Workers: the registry, disputes, a worker's links and their own record."""
