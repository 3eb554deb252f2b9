#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKVMSyscalls

/// A client connection to a unix stream socket (a QEMU monitor), every operation bounded by a
/// deadline on the monotonic clock: a peer that does not answer is a `.timedOut` error, never
/// a hang.
public final class UnixSocket {
    public let descriptor: FileDescriptor
    /// Received and not yet returned as a line.
    private var pending: [UInt8] = []
    /// Where the bytes not yet taken as lines start in `pending`.
    private var start = 0

    public static let timedOut = Errno(rawValue: ETIMEDOUT)

    /// Connects to `path`, waiting until `deadline` at most. A path that fits a socket
    /// address is connected to as it is (the kernel looks it up once, in the connect); a
    /// longer one (`/proc/PID/root/…` of a deep directory) is opened first (O_PATH) and
    /// connected to through `/proc/self/fd/N`, so what was opened is what is connected to.
    public init(path: String, deadline: Double) throws(Errno) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw Errno.current }
        descriptor = FileDescriptor(rawValue: fd)
        // On any error below, deinit closes the descriptor (once).
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let room = MemoryLayout.size(ofValue: address.sun_path)
        var handle: FileDescriptor?
        defer { handle?.close() }
        var bytes = Array(path.utf8)
        // A NUL inside would name another file (or an abstract socket): no such path.
        guard !bytes.isEmpty, !bytes.contains(0) else { throw Errno(rawValue: ENOENT) }
        if bytes.count >= room {
            let opened = try FileDescriptor.open(path, .pathOnly)
            handle = opened
            bytes = Array("/proc/self/fd/\(opened.rawValue)".utf8)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        func attempt() -> Int32 {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        if attempt() != 0 {
            var error = Errno.current
            // A unix socket's full listen queue (its server accepts no one: busy with another
            // client, as a QEMU monitor is) says EAGAIN, and the socket stays unconnected: it
            // is tried again until the deadline, never taken for connected.
            while error.rawValue == EAGAIN {
                guard Signals.monotonicNow() < deadline else { throw Self.timedOut }
                usleep(UInt32(min(5_000, max(1, (deadline - Signals.monotonicNow()) * 1e6))))
                if attempt() == 0 { return }
                error = Errno.current
            }
            guard error.rawValue == EINPROGRESS else { throw error }
            try wait(for: Int16(POLLOUT), until: deadline)
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            if failure != 0 { throw Errno(rawValue: failure) }
        }
    }

    /// The process (thread group) serving the other end: the one that listened on the
    /// socket (SO_PEERCRED); nil when the kernel does not say.
    public func peerProcess() -> Int32? {
        let pid = ckvm_peer_pid(descriptor.rawValue)
        return pid > 0 ? pid : nil
    }

    private var open = true

    /// Hangs up now (a server that serves one client at a time can take the next); the
    /// connection is not used after.
    public func close() {
        guard open else { return }
        open = false
        descriptor.close()
    }

    deinit { close() }

    private func wait(for events: Int16, until deadline: Double) throws(Errno) {
        while true {
            let remaining = deadline - Signals.monotonicNow()
            guard remaining > 0 else { throw Self.timedOut }
            var poller = pollfd(fd: descriptor.rawValue, events: events, revents: 0)
            let n = poll(&poller, 1, Int32(max(1, (remaining * 1000).rounded(.up))))
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno.current
            }
            if n > 0 { return }
        }
    }

    /// Sends all of `text`, from its own bytes where it has them together (a native String's
    /// or Substring's: no copy).
    public func send(_ text: some StringProtocol, deadline: Double) throws(Errno) {
        let sent = text.utf8.withContiguousStorageIfAvailable { bytes in
            Result { () throws(Errno) in try send(UnsafeRawBufferPointer(bytes), deadline: deadline) }
        }
        try (sent ?? Array(text.utf8).withUnsafeBytes { bytes in
            Result { () throws(Errno) in try send(bytes, deadline: deadline) }
        }).get()
    }

    /// Sends `bytes` whole (a String's own, not a copy of them), waiting for room until `deadline`.
    public func send(_ bytes: UnsafeRawBufferPointer, deadline: Double) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.send(descriptor.rawValue, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EAGAIN || errno == EINTR {
                    try wait(for: Int16(POLLOUT), until: deadline)
                    continue
                }
                throw Errno.current
            }
            done += n
        }
    }

    /// Bytes this connection may still receive in all (`budget`): a peer that streams
    /// without end is cut off, whatever its lines.
    public var budget = UnixSocket.defaultBudget

    /// What a connection may receive in all, unless told otherwise.
    public static let defaultBudget = 16 << 20

    /// The next line (without its newline); lines longer than `limit` bytes, or more bytes in
    /// all than `budget`, are an error (EMSGSIZE), and a closed connection is ECONNRESET. The
    /// deadline is checked before every read, not only when one would block: a peer that
    /// always has more to send cannot hold kvmstat past it.
    public func readLine(deadline: Double, limit: Int = 4 << 20) throws(Errno) -> [UInt8] {
        let line = try nextLine(deadline: deadline, limit: limit)
        return Array(pending[line])
    }

    /// The next line as `readLine` takes it, read where it was received (no copy): `body`
    /// gets its bytes, valid only while it runs.
    public func withNextLine<Result, Failure: Error>(
        deadline: Double, limit: Int = 4 << 20,
        _ body: (UnsafeBufferPointer<UInt8>) throws(Failure) -> Result
    ) throws(LineFailure<Failure>) -> Result {
        let line: Range<Int>
        do throws(Errno) { line = try nextLine(deadline: deadline, limit: limit) } catch { throw .receiving(error) }
        do throws(Failure) {
            return try pending.withUnsafeBufferPointer { (bytes) throws(Failure) in
                try body(UnsafeBufferPointer(rebasing: bytes[line]))
            }
        } catch {
            throw .reading(error)
        }
    }

    /// Why `withNextLine` failed: no line came, or its reader threw.
    public enum LineFailure<Failure: Error>: Error {
        case receiving(Errno)
        case reading(Failure)
    }

    /// Where the next line is in `pending`, up to the next call.
    private func nextLine(deadline: Double, limit: Int) throws(Errno) -> Range<Int> {
        // Only bytes not yet searched are searched (a long line arrives in many reads); lines
        // taken leave `start` behind them (answers sent together arrive in one read: each
        // taken without moving the rest), and the buffer is emptied when all were taken.
        if start == pending.count {
            pending.removeAll(keepingCapacity: true)
            start = 0
        }
        var searched = start
        while true {
            let found: Int? = pending.withUnsafeBufferPointer { bytes in
                guard searched < bytes.count,
                      let hit = memchr(bytes.baseAddress! + searched, 0x0A, bytes.count - searched) else { return nil }
                return UnsafeRawPointer(hit) - UnsafeRawPointer(bytes.baseAddress!)
            }
            if let newline = found {
                let line = start..<newline
                start = newline + 1
                return line
            }
            if start > 0 {
                pending.removeSubrange(..<start)
                start = 0
            }
            searched = pending.count
            guard pending.count <= limit, budget > 0 else { throw Errno(rawValue: EMSGSIZE) }
            guard Signals.monotonicNow() < deadline else { throw Self.timedOut }
            // Never more than one byte past the limit is kept (enough to know the line is too
            // long), and the buffer grows to that at most, not to the next power of two.
            let room = min(Self.readSize, limit + 1 - pending.count)
            if pending.capacity - pending.count < room {
                pending.reserveCapacity(min(max(pending.capacity * 2, pending.count + room), limit + 1))
            }
            let n = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: room) { chunk in
                let n = recv(descriptor.rawValue, chunk.baseAddress, room, 0)
                if n > 0 { pending.append(contentsOf: chunk[0..<n]) }
                return n
            }
            if n == 0 { throw Errno(rawValue: ECONNRESET) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR {
                    try wait(for: Int16(POLLIN), until: deadline)
                    continue
                }
                throw Errno.current
            }
            budget -= n
        }
    }

    /// Frees the receive buffer when every line in it was taken (a connection kept between
    /// samples holds no answer's worth of memory meanwhile); a part line (an event being
    /// received) stays, when it is at most `keepingAtMost` bytes. False when it is longer:
    /// the connection is not worth keeping.
    public func releaseBuffer(keepingAtMost limit: Int) -> Bool {
        let left = pending.count - start
        pending = left == 0 || left > limit ? [] : Array(pending[start...])
        start = 0
        return left <= limit
    }

    /// Bytes asked of the kernel per read.
    static let readSize = 65536
}
