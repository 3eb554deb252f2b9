#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKVMSyscalls

/// A listening TCP socket (IPv4 or IPv6), non-blocking, and the few calls a small server
/// makes on its connections: accept, receive, send, poll. Errors are `Errno`s.
public final class TCPListener {
    public let descriptor: FileDescriptor
    /// The port actually bound (port 0 asks the kernel for a free one).
    public let port: Int

    /// Binds `address` (`127.0.0.1`, `::1`, `0.0.0.0`, a link-local `fe80::1%eth0` with its
    /// zone, ...) and `port`, and listens.
    public init(address: String, port: Int, backlog: Int32 = 128) throws(Errno) {
        var v4 = in_addr()
        var v6 = in6_addr()
        var scope: UInt32 = 0
        let family: Int32
        // An IPv6 zone (`%lo`, `%2`): the interface's index, by name or number.
        let parts = address.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        let host = String(parts[0])
        if parts.count == 2 {
            let zone = String(parts[1])
            guard !zone.isEmpty, inet_pton(AF_INET6, host, &v6) == 1 else { throw Errno.invalidArgument }
            scope = UInt32(zone) ?? if_nametoindex(zone)
            guard scope != 0 else { throw Errno.noSuchDevice }
            family = AF_INET6
        } else if inet_pton(AF_INET, address, &v4) == 1 {
            family = AF_INET
        } else if inet_pton(AF_INET6, address, &v6) == 1 {
            family = AF_INET6
        } else {
            throw Errno.invalidArgument
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw Errno.current }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound: Int32
        if family == AF_INET {
            var socketAddress = sockaddr_in()
            socketAddress.sin_family = sa_family_t(AF_INET)
            socketAddress.sin_port = in_port_t(UInt16(clamping: port)).bigEndian
            socketAddress.sin_addr = v4
            bound = Self.bind(fd, &socketAddress)
        } else {
            var socketAddress = sockaddr_in6()
            socketAddress.sin6_family = sa_family_t(AF_INET6)
            socketAddress.sin6_port = in_port_t(UInt16(clamping: port)).bigEndian
            socketAddress.sin6_addr = v6
            socketAddress.sin6_scope_id = scope
            bound = Self.bind(fd, &socketAddress)
        }
        guard bound == 0, listen(fd, backlog) == 0 else {
            let error = Errno.current
            close(fd)
            throw error
        }
        descriptor = FileDescriptor(rawValue: fd)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let rawPort = withUnsafeBytes(of: &storage) { raw -> UInt16 in
            // sin_port and sin6_port both sit right after the 2-byte family.
            raw.load(fromByteOffset: 2, as: UInt16.self)
        }
        self.port = Int(UInt16(bigEndian: rawPort))
    }

    deinit { descriptor.close() }

    /// bind(2) with a `sockaddr_in` or `sockaddr_in6`.
    private static func bind<Address>(_ fd: Int32, _ address: inout Address) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
    }

    /// A waiting connection (non-blocking), or nil when there is none.
    public func accept() throws(Errno) -> FileDescriptor? {
        let fd = ckvm_accept_nonblocking(descriptor.rawValue)
        if fd >= 0 { return FileDescriptor(rawValue: fd) }
        let error = Errno.current
        if error.rawValue == EAGAIN || error.rawValue == EWOULDBLOCK || error.rawValue == EINTR
            || error.rawValue == ECONNABORTED {
            return nil
        }
        throw error
    }
}

/// Calls on a connected, non-blocking socket.
public enum SocketIO {
    public enum Received { case bytes(Int), wouldBlock, closed }

    /// Receives into `buffer`.
    public static func receive(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Received {
        let n = recv(fd.rawValue, buffer.baseAddress, buffer.count, 0)
        if n > 0 { return .bytes(n) }
        if n == 0 { return .closed }
        let error = Errno.current
        if error.rawValue == EAGAIN || error.rawValue == EWOULDBLOCK || error.rawValue == EINTR { return .wouldBlock }
        throw error
    }

    /// Sends what it can of `bytes`; returns how many went (0: would block).
    public static func send(_ fd: FileDescriptor, _ bytes: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try sent(Glibc.send(fd.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)))
    }

    /// Sends as much of `first` then `second` as the socket takes in one call (an answer's
    /// head and body, without copying them together); how much went, 0 when it would block.
    public static func send(_ fd: FileDescriptor, _ first: UnsafeRawBufferPointer,
                            _ second: UnsafeRawBufferPointer) throws(Errno) -> Int {
        var parts = [iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
                     iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)]
        return try sent(parts.withUnsafeMutableBufferPointer { parts in
            var message = msghdr()
            message.msg_iov = parts.baseAddress
            message.msg_iovlen = parts.count
            return Glibc.sendmsg(fd.rawValue, &message, Int32(MSG_NOSIGNAL))
        })
    }

    /// What a send returned: the bytes that went, 0 when the socket would block (or a signal
    /// came first), the error otherwise.
    private static func sent(_ n: Int) throws(Errno) -> Int {
        if n >= 0 { return n }
        let error = Errno.current
        if error.rawValue == EAGAIN || error.rawValue == EWOULDBLOCK || error.rawValue == EINTR { return 0 }
        throw error
    }

    /// Waits up to `milliseconds` for the events asked; returns each descriptor's events.
    public static func poll(_ entries: [(FileDescriptor, readable: Bool, writable: Bool)], milliseconds: Int32) -> [Int16] {
        var fds = entries.map { entry in
            pollfd(fd: entry.0.rawValue,
                   events: (entry.readable ? Int16(POLLIN) : 0) | (entry.writable ? Int16(POLLOUT) : 0), revents: 0)
        }
        let n = Glibc.poll(&fds, nfds_t(fds.count), milliseconds)
        if n <= 0 { return Array(repeating: 0, count: fds.count) }
        return fds.map(\.revents)
    }
}
