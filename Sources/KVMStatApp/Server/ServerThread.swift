#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// The server's loop, on its own thread.
final class ServerThread: @unchecked Sendable {
    let server: MetricsServer
    var connections: [MetricsServer.Connection] = []
    /// After accept(2) failed (out of descriptors), the listener is left alone until then:
    /// a readable listener that cannot be served would make poll(2) spin.
    var listenerRestsUntil = 0.0

    init(server: MetricsServer) { self.server = server }

    func run() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let entries = [(server.listener.descriptor, readable: Signals.monotonicNow() >= listenerRestsUntil, writable: false)]
                + connections.map {
                    ($0.fd, readable: $0.response == nil || $0.closing != nil,
                     writable: $0.response != nil && $0.closing == nil)
                }
            let events = SocketIO.poll(entries, milliseconds: 100)
            let now = Signals.monotonicNow()
            var keep: [MetricsServer.Connection] = []
            for (index, var connection) in connections.enumerated() {
                let ready = events[index + 1]
                if ready != 0 && !serve(&connection, ready: ready, buffer: &buffer) {
                    connection.fd.close()
                    continue
                }
                let expired: Bool
                if let closing = connection.closing {
                    expired = now - closing > MetricsServer.lingerTime
                } else if connection.response != nil {
                    expired = now - connection.answered > MetricsServer.responseTimeout
                } else {
                    expired = now - connection.accepted > MetricsServer.requestTimeout
                }
                if expired {
                    connection.fd.close()
                    continue
                }
                keep.append(connection)
            }
            connections = keep
            if events[0] != 0 { acceptAll(now: now) }
        }
    }

    private func acceptAll(now: Double) {
        while true {
            let accepted: FileDescriptor?
            do { accepted = try server.listener.accept() } catch {
                listenerRestsUntil = now + 0.1
                return
            }
            guard let fd = accepted else { return }
            if connections.count >= MetricsServer.maxConnections {
                // Make room, whatever the connections are doing: first the oldest one already
                // answered (what it still sends is only being drained), then the oldest still
                // sending its request, then the oldest whose answer it is not taking.
                let order: [(MetricsServer.Connection) -> Bool] = [
                    { $0.closing != nil }, { $0.response == nil }, { _ in true },
                ]
                guard let victim = order.lazy.compactMap({ state in
                    self.connections.indices.filter { state(self.connections[$0]) }
                        .min { self.connections[$0].accepted < self.connections[$1].accepted }
                }).first else {
                    fd.close()
                    continue
                }
                connections[victim].fd.close()
                connections.remove(at: victim)
            }
            connections.append(MetricsServer.Connection(fd: fd, accepted: now))
        }
    }

    /// Reads or writes what the connection is ready for; false when it is done or broken.
    private func serve(_ connection: inout MetricsServer.Connection, ready: Int16, buffer: inout [UInt8]) -> Bool {
        if connection.closing != nil {
            // Answered: drop what the client still sends until it closes.
            let received = buffer.withUnsafeMutableBytes { raw in try? SocketIO.receive(connection.fd, into: raw) }
            if case .bytes? = received { return true }
            if case .wouldBlock? = received { return true }
            return false
        }
        if connection.response == nil {
            guard ready & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { return true }
            let received = buffer.withUnsafeMutableBytes { raw in try? SocketIO.receive(connection.fd, into: raw) }
            switch received {
            case .bytes(let count)?: connection.request += buffer[0..<count]
            case .wouldBlock?: return true
            case .closed?, nil: return false
            }
            if let end = Self.endOfHead(connection.request), end <= MetricsServer.headerLimit {
                connection.response = server.respond(to: Array(connection.request[0..<end]))
                connection.request = []
                connection.answered = Signals.monotonicNow()
            } else if connection.request.count > MetricsServer.headerLimit {
                server.note(status: 431, seconds: nil)
                connection.response = MetricsServer.answer(431, "Request Header Fields Too Large", "headers too large\n")
                connection.request = []
                connection.answered = Signals.monotonicNow()
            } else {
                return true
            }
        }
        guard let response = connection.response else { return true }
        let sent = response.send(from: connection.sent, to: connection.fd)
        guard let sent else { return false }
        connection.sent += sent
        if connection.sent < response.count { return true }
        shutdown(connection.fd.rawValue, Int32(SHUT_WR))
        connection.closing = Signals.monotonicNow()
        return true
    }

    /// Where the request head ends (after its blank line), if it has.
    static func endOfHead(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 3 else { return nil }
        // CRLF CRLF, or a bare LF where a CRLF belongs (RFC 9112 §2.2 lets a server take
        // LF alone): LF LF and LF CR LF.
        for i in 2..<bytes.count where bytes[i] == 10 {
            if bytes[i - 1] == 10 { return i + 1 }
            if bytes[i - 1] == 13 && bytes[i - 2] == 10 { return i + 1 }
        }
        return nil
    }
}
