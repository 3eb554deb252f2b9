import KVMCore

/// Data sources (tracepoint, debugfs) arrive with the sources issue; the module exists now so
/// the package's shape is fixed.
public enum KVMSourcesModule {}
