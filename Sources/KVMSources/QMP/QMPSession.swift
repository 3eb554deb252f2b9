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

    init(path: String, deadline: Double) throws(Failure) {
        self.deadline = deadline
        do throws(Errno) {
            socket = try UnixSocket(path: path, deadline: deadline)
        } catch {
            throw Failure(description: error == UnixSocket.timedOut ? "no answer" : "cannot connect: \(error)")
        }
        let greeting = try nextMessage()
        guard greeting["QMP"] != nil else { throw Failure(description: "not a QMP monitor (no greeting)") }
        _ = try execute("qmp_capabilities")
    }

    private func nextMessage() throws(Failure) -> JSONValue {
        let line: String
        do throws(Errno) { line = try socket.readLine(deadline: deadline) } catch {
            throw Failure(description: error == UnixSocket.timedOut ? "no answer" : "\(error)")
        }
        do throws(JSONValue.ParseError) { return try JSONValue.parse(line) } catch {
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
        while true {
            let message = try nextMessage()
            if message["event"] != nil { continue }
            if let answer = message["return"] { return answer }
            if let error = message["error"] {
                throw Failure(description: "\(command): " + (error["desc"]?.stringValue ?? "error"))
            }
            throw Failure(description: "\(command): unexpected answer")
        }
    }
}
