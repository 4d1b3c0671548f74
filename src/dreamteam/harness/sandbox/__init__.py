"""The sandbox: the parent's launcher, the child's entry point, and the walls the child raises before candidate code runs.

Kept import-free: the child imports `walls` through this package before it confines itself."""
