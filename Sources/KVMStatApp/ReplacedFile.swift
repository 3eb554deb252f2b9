#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// A file replaced whole every sample (`-L FILE.prom`, node_exporter's textfile collector):
/// each content is written to a temporary file beside it, then renamed over it, so a reader
/// sees the old file or the new one, never part of one.
///
/// The directory is opened once, at start, and every later call is relative to that
/// descriptor (`openat`, `renameat`, `unlinkat`): its path is never walked again, so whoever
/// owns a directory on the way (Debian's /var/lib/prometheus belongs to `prometheus`) cannot
/// swap it for a link and make root kvmstat write elsewhere. The temporary name is hidden
/// (node_exporter reads `*.prom`) and unpredictable (`.FILE.tmp-PID-RANDOM`), created
/// exclusively and never through a link. A directory that is removed, or that its path no
/// longer leads to, is a one-line error: kvmstat writes only where the file was at start.
final class ReplacedFile {
    let path: String
    private let directoryPath: String
    private let directory: FileDescriptor
    private let directoryStatus: FileSystem.Status
    private let name: String
    private let temporary: String

    init(path: String) throws(Errno) {
        self.path = path
        let slash = path.lastIndex(of: "/")
        directoryPath = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !name.isEmpty, name != ".", name != ".." else { throw Errno.isADirectory }
        directory = try FileDescriptor.open(directoryPath, [.directory])
        directoryStatus = try FileSystem.status(of: directory)
        var random = SystemRandomNumberGenerator()
        temporary = "." + name + ".tmp-" + String(getpid()) + "-" + String(random.next() as UInt64, radix: 16)
        // The directory must take the temporary file: find out now, before sources open.
        try writeTemporary("")
        FileSystem.unlink(temporary, in: directory)
    }

    deinit { directory.close() }

    /// Replaces the file's content with `text`; on failure (a full disk, the directory gone)
    /// the temporary file is removed and the last complete file kept.
    func replace(with text: String) throws(Failure) {
        TemporaryFile.pending(temporary, in: directory)
        defer { TemporaryFile.pending(nil, in: directory) }
        do throws(Errno) {
            try checkDirectory()
            try writeTemporary(text)
            try FileSystem.rename(temporary, to: name, in: directory)
        } catch {
            FileSystem.unlink(temporary, in: directory)
            if error == .noSuchFile || error == .notDirectory {
                throw .message("\(directoryPath), the directory of \(path), was moved or removed; kvmstat "
                    + "writes \(name) only in the directory it had at start")
            }
            throw .message("error writing \(path): \(error); the previous file is kept whole")
        }
    }

    /// ENOENT when the directory's path no longer leads to the directory held: it was
    /// removed (nothing there, or a new directory with another inode) or swapped.
    private func checkDirectory() throws(Errno) {
        guard let now = try? FileSystem.status(directoryPath),
              now.inode == directoryStatus.inode, now.device == directoryStatus.device
        else { throw .noSuchFile }
    }

    /// Writes the temporary file, created exclusively and never through a link (its name
    /// cannot be guessed, and a failed write removes it, so nothing stands there before).
    private func writeTemporary(_ text: String) throws(Errno) {
        let name = Array(temporary.utf8CString)
        let file = try name.withUnsafeBufferPointer { (name) -> Result<FileDescriptor, Errno> in
            do throws(Errno) {
                return .success(try FileDescriptor.open(name.baseAddress!, relativeTo: directory,
                                                        [.writeOnly, .create, .exclusive, .noFollow]))
            } catch {
                return .failure(error)
            }
        }.get()
        defer { file.close() }
        try file.writeAll(text)
    }
}
