import KVMCore

/// Output formats (text, csv, jsonl) arrive with the command-line issue; the module exists now
/// so the package's shape is fixed.
public enum KVMFormatsModule {}
