"""End to end: the newsbot command as operators run it, and the package as users install it."""
