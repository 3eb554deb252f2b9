#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// Where log records go: stdout (`-l`) or a file opened for appending (`-L FILE`), written a
/// whole line per write(2) so nothing sits in a buffer when kvmstat is stopped or rotated.
///
/// A record is all or nothing: when a write fails part-way (a full disk), the file is cut
/// back to the last complete record before kvmstat says so and ends; and a file that does
/// not end with a complete record (an older failure, another program) gets a line break
/// before the first new record, so two records are never glued together.
///
/// With `replacing` (formats read whole, node_exporter's textfile collector), each record
/// replaces the file instead (`ReplacedFile`).
final class LogSink {
    let path: String?
    private var fd: FileDescriptor
    private var regular: Bool
    private let replaced: ReplacedFile?

    init(path: String?, replacing: Bool = false) throws(Errno) {
        self.path = path
        if replacing, let path {
            replaced = try ReplacedFile(path: path)
            fd = Console.standardOutput
            regular = false
            return
        }
        replaced = nil
        if let path {
            fd = try FileDescriptor.open(path, [.writeOnly, .create, .append])
        } else {
            fd = Console.standardOutput
        }
        regular = fd.isRegularFile
        endPartialRecord()
    }

    var isFile: Bool { path != nil }

    /// Whether the file already holds something (the CSV header is then not written again).
    var isEmpty: Bool { (try? fd.size()) == 0 }

    /// logrotate moved the file away: start a new one at the same path.
    func reopen() throws(Errno) {
        guard let path, replaced == nil else { return }
        let fresh = try FileDescriptor.open(path, [.writeOnly, .create, .append])
        fd.close()
        fd = fresh
        regular = fd.isRegularFile
        endPartialRecord()
    }

    func write(line: String) throws(Failure) {
        if let replaced { return try replaced.replace(with: line + "\n") }
        let before = regular ? try? fd.writePosition() : nil
        do { try fd.writeAll(line + "\n") } catch {
            if !isFile && error == .brokenPipe { throw .end(.success) }
            var message = "error writing to \(path ?? "standard output"): \(error)"
            if let before {
                if (try? fd.truncate(to: before)) != nil {
                    message += "; the unfinished record was removed, the file ends with the last complete one"
                } else {
                    message += "; the file ends with an unfinished record"
                }
            }
            throw .message(message)
        }
    }

    /// Starts a fresh line when a regular file ends in the middle of a record.
    private func endPartialRecord() {
        guard regular, let size = try? fd.size(), size > 0 else { return }
        var last: UInt8 = 0
        guard let reader = try? FileDescriptor.open("/proc/self/fd/\(fd.rawValue)") else { return }
        defer { reader.close() }
        guard (try? withUnsafeMutableBytes(of: &last) { (raw) throws(Errno) in
            try reader.read(fromAbsoluteOffset: size - 1, into: raw)
        }) == 1
        else { return }
        guard last != UInt8(ascii: "\n") else { return }
        Console.warn("\(path ?? "standard output") ends with an unfinished record; "
            + "new records start on the next line")
        try? fd.writeAll("\n")
    }
}
