#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The few file-system questions kvmstat asks, answered without Foundation.
public enum FileSystem {
    /// Where a symbolic link points (`/proc/PID/fd/N` → `anon_inode:kvm-vcpu:0`).
    public static func linkTarget(_ path: String) throws(Errno) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n >= 0 else { throw Errno.current }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The whole content of a (small, usually virtual) file such as /proc/cpuinfo.
    public static func readText(_ path: String) throws(Errno) -> String {
        let fd = try FileDescriptor.open(path, .nonBlocking)
        defer { fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            var result: Result<Int, Errno> = .success(0)
            chunk.withUnsafeMutableBytes { buf in
                do throws(Errno) { result = .success(try fd.read(into: buf)) } catch {
                    result = .failure(error)
                }
            }
            let n = try result.get()
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether `path` exists (following links).
    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Whether `path` is a directory (following links).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public struct DirectoryEntry: Sendable, Equatable {
        public let name: String
        public let isDirectory: Bool
        /// The entry's inode: a debugfs directory re-created under the same name (a VM whose
        /// `PID-FD` came back) has a new one.
        public let inode: UInt64

        public init(name: String, isDirectory: Bool, inode: UInt64 = 0) {
            self.name = name
            self.isDirectory = isDirectory
            self.inode = inode
        }
    }

    /// What stat(2) says of a file that kvmstat cares about.
    public struct Status: Sendable, Equatable {
        public let inode: UInt64
        public let mode: UInt32
        /// The device the inode is on (an inode number is unique on its device only).
        public let device: UInt64

        init(_ st: stat) {
            inode = UInt64(st.st_ino)
            mode = UInt32(st.st_mode)
            device = UInt64(st.st_dev)
        }

        public var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
        public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
        /// Whether anyone may write it (KVM makes its cumulative statistics 0644 and its
        /// instant ones 0444).
        public var isWritable: Bool { mode & 0o222 != 0 }
    }

    /// stat(2) of `path` (following links).
    public static func status(_ path: String) throws(Errno) -> Status {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Errno.current }
        return Status(st)
    }

    /// fstatat(2) of `name` relative to `directory`, not following a last link.
    public static func status(_ name: String, relativeTo directory: FileDescriptor) throws(Errno) -> Status {
        var st = stat()
        guard fstatat(directory.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw Errno.current }
        return Status(st)
    }

    /// fstat(2) of an open descriptor.
    public static func status(of fd: FileDescriptor) throws(Errno) -> Status {
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { throw Errno.current }
        return Status(st)
    }

    /// renameat(2) within one directory held open: no path is walked again.
    public static func rename(_ from: String, to: String, in directory: FileDescriptor) throws(Errno) {
        guard renameat(directory.rawValue, from, directory.rawValue, to) == 0 else { throw Errno.current }
    }

    /// unlinkat(2) of `name` in a directory held open.
    public static func unlink(_ name: String, in directory: FileDescriptor) {
        _ = unlinkat(directory.rawValue, name, 0)
    }

    /// The numeric entry names of a directory (pids, tids), parsed without building strings:
    /// the per-sample thread scan of a watched process.
    public static func numericEntries(_ path: String) throws(Errno) -> [Int] {
        guard let dir = opendir(path) else { throw Errno.current }
        defer { closedir(dir) }
        var numbers: [Int] = []
        while let entry = readdir(dir) {
            let number = withUnsafePointer(to: &entry.pointee.d_name) { name -> Int? in
                name.withMemoryRebound(to: UInt8.self, capacity: 256) { bytes in
                    var value = 0
                    var i = 0
                    while bytes[i] != 0 {
                        guard bytes[i] >= 0x30 && bytes[i] <= 0x39, i < 19 else { return nil }
                        value = value * 10 + Int(bytes[i] - 0x30)
                        i += 1
                    }
                    return i > 0 ? value : nil
                }
            }
            if let number { numbers.append(number) }
        }
        return numbers
    }

    /// The entries of a directory, without `.` and `..`, in the kernel's order.
    public static func listDirectory(_ path: String) throws(Errno) -> [DirectoryEntry] {
        guard let dir = opendir(path) else { throw Errno.current }
        defer { closedir(dir) }
        var entries: [DirectoryEntry] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            var isDir = entry.pointee.d_type == UInt8(DT_DIR)
            if entry.pointee.d_type == UInt8(DT_UNKNOWN) || entry.pointee.d_type == UInt8(DT_LNK) {
                isDir = isDirectory(path + "/" + name)
            }
            entries.append(DirectoryEntry(name: name, isDirectory: isDir,
                                          inode: UInt64(entry.pointee.d_ino)))
        }
        return entries
    }
}
