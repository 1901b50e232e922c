"""The local disk and the process's collector, for the pure readers (`files.local`)."""
