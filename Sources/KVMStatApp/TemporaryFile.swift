#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// The temporary file of a replacing log (`-L FILE.prom`) while it is being written, so that
/// every way out — the main thread's exit, the signal watcher's emergency end — removes it
/// and no half-written file is left behind.
enum TemporaryFile {
    /// A hidden name beside the target that node_exporter (which reads `*.prom`) ignores.
    static func path(for target: String) -> String {
        let slash = target.lastIndex(of: "/")
        let directory = slash.map { String(target[...$0]) } ?? ""
        let base = slash.map { String(target[target.index(after: $0)...]) } ?? target
        return directory + "." + base + ".tmp-" + String(getpid())
    }

    /// The path being written, under a lock: the watcher thread may remove it while the main
    /// thread finishes with it.
    private static let current = Mutex<String?>(nil)

    static func pending(_ path: String?) {
        current.withLock { $0 = path }
    }

    /// Removes the file being written, if any (exit paths).
    static func remove() {
        current.withLock { path in
            if let path { unlink(path) }
        }
    }
}
