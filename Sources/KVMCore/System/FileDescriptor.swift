#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKVMSyscalls

/// An open file descriptor. Every system call on it reports failure as a thrown `Errno`;
/// nothing outside this folder sees a raw `-1`.
public struct FileDescriptor: Hashable, Sendable {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    public struct OpenOptions: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let readOnly = OpenOptions([])
        public static let readWrite = OpenOptions(rawValue: O_RDWR)
        public static let writeOnly = OpenOptions(rawValue: O_WRONLY)
        public static let create = OpenOptions(rawValue: O_CREAT)
        public static let append = OpenOptions(rawValue: O_APPEND)
        public static let truncate = OpenOptions(rawValue: O_TRUNC)
        public static let directory = OpenOptions(rawValue: O_DIRECTORY)
        public static let exclusive = OpenOptions(rawValue: O_EXCL)
        /// O_NONBLOCK: opening a FIFO without a writer returns at once.
        public static let nonBlocking = OpenOptions(rawValue: O_NONBLOCK)
        /// O_NOFOLLOW: a symbolic link is refused, not followed (to a device, say).
        public static let noFollow = OpenOptions(rawValue: O_NOFOLLOW)
        /// O_PATH: a handle for *at() calls that does not open the file itself.
        public static let pathOnly = OpenOptions(rawValue: 0o10000000)
    }

    /// Opens `path`; always close-on-exec so descriptors never leak into children.
    public static func open(
        _ path: String, _ options: OpenOptions = .readOnly, permissions: mode_t = 0o644
    ) throws(Errno) -> FileDescriptor {
        let fd = retryOnInterrupt { Glibc.open(path, options.rawValue | O_CLOEXEC, permissions) }
        guard fd >= 0 else { throw Errno.current }
        return FileDescriptor(rawValue: fd)
    }

    /// Opens `name` relative to the directory `directory` (openat(2)): no path walk from the
    /// root and no string building on hot paths that read many small files. Statistics are
    /// opened with `.nonBlocking`, so a FIFO or device where a file was expected never
    /// makes kvmstat wait.
    public static func open(
        _ name: UnsafePointer<CChar>, relativeTo directory: FileDescriptor,
        _ options: OpenOptions = .readOnly, permissions: mode_t = 0o644
    ) throws(Errno) -> FileDescriptor {
        let fd = retryOnInterrupt { openat(directory.rawValue, name, options.rawValue | O_CLOEXEC, permissions) }
        guard fd >= 0 else { throw Errno.current }
        return FileDescriptor(rawValue: fd)
    }

    /// Reads a small file's leading decimal number (a debugfs counter, a u64 in the kernel)
    /// through one read(2) into `scratch`. Nil when the file holds no number or one that does
    /// not fit in 64 bits (it is read whole: a number longer than `scratch` does not fit).
    public func readLeadingUInt64(scratch: UnsafeMutableRawBufferPointer) throws(Errno) -> UInt64? {
        let n = try read(into: scratch)
        var value: UInt64 = 0
        var digits = 0
        for i in 0..<n {
            let byte = scratch[i]
            guard byte >= 0x30 && byte <= 0x39 else { break }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte &- 0x30))
            if overflow1 || overflow2 { return nil }
            value = sum
            digits += 1
        }
        return digits > 0 && digits < n || digits > 0 && n < scratch.count ? value : nil
    }

    /// Reads up to `buffer.count` bytes at the current offset.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        let n = retryOnInterrupt { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
        guard n >= 0 else { throw Errno.current }
        return n
    }

    /// Reads up to `buffer.count` bytes at `offset` without moving the file offset.
    public func read(
        fromAbsoluteOffset offset: Int, into buffer: UnsafeMutableRawBufferPointer
    ) throws(Errno) -> Int {
        let n = retryOnInterrupt { pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
        guard n >= 0 else { throw Errno.current }
        return n
    }

    /// Writes all of `bytes`, looping over short writes. A descriptor someone made
    /// non-blocking (a pipe whose reader is slow) is waited for, not an error.
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let n = retryOnInterrupt {
                Glibc.write(rawValue, bytes.baseAddress! + done, bytes.count - done)
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                var writable = pollfd(fd: rawValue, events: Int16(POLLOUT), revents: 0)
                _ = retryOnInterrupt { poll(&writable, 1, -1) }
                continue
            }
            guard n >= 0 else { throw Errno.current }
            done += n
        }
    }

    public func writeAll(_ string: String) throws(Errno) {
        var copy = string
        var failure: Errno?
        copy.withUTF8 { utf8 in
            do throws(Errno) { try writeAll(UnsafeRawBufferPointer(utf8)) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Current size of the file (for "is this log file empty?").
    public func size() throws(Errno) -> Int {
        var st = stat()
        guard fstat(rawValue, &st) == 0 else { throw Errno.current }
        return Int(st.st_size)
    }

    /// Whether it is a regular file (a log on disk, not a pipe or terminal).
    public var isRegularFile: Bool {
        var st = stat()
        return fstat(rawValue, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Where the next write lands: the end of the file with O_APPEND, else the offset (they
    /// differ for `>` when another program truncated the file, or for `1<>`).
    public func writePosition() throws(Errno) -> Int {
        let flags = fcntl(rawValue, F_GETFL)
        guard flags >= 0 else { throw Errno.current }
        if flags & O_APPEND != 0 { return try size() }
        let offset = lseek(rawValue, 0, SEEK_CUR)
        guard offset >= 0 else { throw Errno.current }
        return Int(offset)
    }

    /// Cuts the file to `size` bytes and puts the offset there (ftruncate(2), lseek(2)).
    public func truncate(to size: Int) throws(Errno) {
        guard ftruncate(rawValue, off_t(size)) == 0 else { throw Errno.current }
        guard lseek(rawValue, off_t(size), SEEK_SET) >= 0 else { throw Errno.current }
    }

    /// An ioctl whose argument is a plain integer.
    public func ioctl(_ request: UInt, value: UInt = 0) throws(Errno) -> Int32 {
        let r = ckvm_ioctl_value(rawValue, request, value)
        guard r >= 0 else { throw Errno.current }
        return r
    }

    /// An ioctl whose argument points at memory.
    public func ioctl(_ request: UInt, pointer: UnsafeMutableRawPointer?) throws(Errno) -> Int32 {
        let r = ckvm_ioctl_pointer(rawValue, request, pointer)
        guard r >= 0 else { throw Errno.current }
        return r
    }

    /// Closes the descriptor; EINTR is not retried (Linux has already released it).
    public func close() {
        _ = Glibc.close(rawValue)
    }
}

/// Runs `body` again while it fails with EINTR.
@inline(__always)
func retryOnInterrupt<T: BinaryInteger>(_ body: () -> T) -> T {
    while true {
        let r = body()
        if r == -1 && errno == EINTR { continue }
        return r
    }
}
