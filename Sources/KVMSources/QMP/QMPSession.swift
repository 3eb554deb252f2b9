import KVMCore

/// One conversation with a QEMU monitor over its unix socket, as QMP wants it: the greeting,
/// `qmp_capabilities`, then one command at a time, each answer a line of JSON; asynchronous
/// events may come between answers and are skipped. Every step is bounded by `deadline`.
final class QMPSession {
    private let socket: UnixSocket
    private let deadline: Double

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Connects to the monitor at `path`, only when process `server` (whose command line
    /// named it) is the one serving the socket (SO_PEERCRED): a command line can name any
    /// socket, another user's process one of root's real monitors.
    init(path: String, deadline: Double, server: Int) throws(Failure) {
        self.deadline = deadline
        do throws(Errno) {
            socket = try UnixSocket(path: path, deadline: deadline)
        } catch {
            throw Failure(description: error == UnixSocket.timedOut ? "no answer" : "cannot connect: \(error)")
        }
        if let peer = socket.peerProcess(), Int(peer) != server {
            throw Failure(description: "the socket is served by pid \(peer), not by this process: not its monitor")
        }
        let greeting = try nextMessage()
        guard greeting["QMP"] != nil else { throw Failure(description: "not a QMP monitor (no greeting)") }
        _ = try execute("qmp_capabilities")
    }

    private func nextMessage() throws(Failure) -> JSONValue {
        let line: [UInt8]
        do throws(Errno) { line = try socket.readLine(deadline: deadline, limit: Self.maxLine) } catch {
            throw Failure(description: error == UnixSocket.timedOut ? "no answer" : "\(error)")
        }
        do throws(JSONValue.ParseError) { return try JSONValue.parse(bytes: line) } catch {
            throw Failure(description: "\(error)")
        }
    }

    /// Runs `command` and returns its `return` value.
    func execute(_ command: String, arguments: JSONValue? = nil) throws(Failure) -> JSONValue {
        var request: [(String, JSONValue)] = [("execute", .string(command))]
        if let arguments { request.append(("arguments", arguments)) }
        do throws(Errno) {
            try socket.send(JSONValue.object(request).rendered() + "\n", deadline: deadline)
        } catch {
            throw Failure(description: error == UnixSocket.timedOut ? "no answer" : "\(error)")
        }
        // Events may come between answers; a monitor that sends nothing else is cut off.
        for _ in 0..<Self.maxEventsPerAnswer {
            let message = try nextMessage()
            if message["event"] != nil { continue }
            if let answer = message["return"] { return answer }
            if let error = message["error"] {
                throw Failure(description: "\(command): " + (error["desc"]?.stringValue ?? "error"))
            }
            throw Failure(description: "\(command): unexpected answer")
        }
        throw Failure(description: "\(command): events without end, no answer")
    }

    static let maxEventsPerAnswer = 1_000
    /// One answer's length at most: a 240-vCPU guest's statistics with histograms are about
    /// 0.6 MB.
    static let maxLine = 1 << 20
}
