#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// Where log records go: stdout (`-l`) or a file opened for appending (`-L FILE`), written a
/// whole line per write(2) so nothing sits in a buffer when kvmstat is stopped or rotated.
final class LogSink {
    let path: String?
    private var fd: FileDescriptor

    init(path: String?) throws(Errno) {
        self.path = path
        if let path {
            fd = try FileDescriptor.open(path, [.writeOnly, .create, .append])
        } else {
            fd = Console.standardOutput
        }
    }

    var isFile: Bool { path != nil }

    /// Whether the file already holds something (the CSV header is then not written again).
    var isEmpty: Bool { (try? fd.size()) == 0 }

    /// logrotate moved the file away: start a new one at the same path.
    func reopen() throws(Errno) {
        guard let path else { return }
        let fresh = try FileDescriptor.open(path, [.writeOnly, .create, .append])
        fd.close()
        fd = fresh
    }

    func write(line: String) {
        do { try fd.writeAll(line + "\n") } catch {
            if !isFile && error == .brokenPipe { Console.leave(0) }
            Console.fail("error writing to \(path ?? "standard output"): \(error)")
        }
    }
}
