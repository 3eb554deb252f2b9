import KVMCore

typealias KVMCorePaths = SystemPaths
