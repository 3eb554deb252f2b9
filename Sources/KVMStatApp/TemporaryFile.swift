#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import Synchronization

/// The temporary file of a replacing log (`-L FILE.prom`) while it is being written, so that
/// every way out — the main thread's exit, the signal watcher's emergency end — removes it
/// and no half-written file is left behind. It is named relative to its directory's
/// descriptor: no path is walked again to remove it.
enum TemporaryFile {
    /// The file being written (its directory's descriptor and its name), under a lock: the
    /// watcher thread may remove it while the main thread finishes with it.
    private static let current = Mutex<(directory: Int32, name: String)?>(nil)

    static func pending(_ name: String?, in directory: FileDescriptor) {
        current.withLock { $0 = name.map { (directory.rawValue, $0) } }
    }

    /// Removes the file being written, if any (exit paths).
    static func remove() {
        current.withLock { pending in
            if let pending { _ = unlinkat(pending.directory, pending.name, 0) }
        }
    }
}
