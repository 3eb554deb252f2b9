import KVMCore

/// One conversation with a QEMU monitor over its unix socket, as QMP wants it: the greeting,
/// `qmp_capabilities`, then commands, each answer a line of JSON; asynchronous events may
/// come between answers and are skipped. Every step is bounded by `deadline`.
///
/// Commands may be sent together (`send`) and their answers read after (`answer`): QMP
/// executes a client's in-band commands one after the other and answers in that order, so a
/// sample's questions cost one round trip, not one each.
///
/// Used by one thread at a time: a session kept between samples (`resume`) goes from the qmp
/// source, under its lock, to the worker that asks its guest, and back.
final class QMPSession: @unchecked Sendable {
    private let socket: UnixSocket
    private var deadline: Double

    struct Failure: Error, CustomStringConvertible {
        let description: String
        /// The monitor did not answer in time.
        var timedOut = false
        /// It did not take the connection or greet in time: it serves another client.
        var ungreeted = false

        init(description: String) { self.description = description }

        /// What a socket's error says: no answer in time, or the error (after `saying`).
        init(_ error: Errno, saying: String = "") {
            timedOut = error == UnixSocket.timedOut
            description = timedOut ? QMPSession.noAnswer : saying + "\(error)"
        }
    }

    /// A command and its arguments.
    struct Request {
        let command: String
        var arguments: JSONValue?
    }

    /// Connects to the monitor at `path`, only when process `server` (whose command line
    /// named it) is the one serving the socket (SO_PEERCRED): a command line can name any
    /// socket, another user's process one of root's real monitors. `questions` (made by
    /// `text(_:)`, `qmp_capabilities` first) are sent at once, before the greeting is read:
    /// the monitor reads them after greeting, and the greeting costs no round trip of its
    /// own; the answer to their `qmp_capabilities` is read here. Without, the capabilities
    /// are negotiated here: either way the session is made negotiated. The connection must be
    /// taken and greeted by `greetingDeadline` (a monitor that serves another client greets
    /// nobody else).
    init(path: String, deadline: Double, server: Int, questions: String? = nil,
         greetingDeadline: Double? = nil) throws(Failure) {
        self.deadline = min(deadline, greetingDeadline ?? deadline)
        do throws(Errno) {
            socket = try UnixSocket(path: path, deadline: self.deadline)
        } catch {
            // A monitor that accepts no one in time serves another client.
            var failure = Failure(error, saying: "cannot connect: ")
            failure.ungreeted = failure.timedOut
            throw failure
        }
        guard let peer = socket.peerProcess() else { throw Failure(description: "cannot connect: no process serves it") }
        guard Int(peer) == server else {
            throw Failure(description: "the socket is served by pid \(peer), not by this process: not its monitor")
        }
        if let questions { try send(text: questions) }
        var greeted = false
        do throws(Failure) {
            try withNextLine { (bytes) throws(JSONValue.ParseError) in
                var scanner = JSONScanner(bytes)
                try scanner.members(depth: 0) { (scanner, key) throws(JSONValue.ParseError) in
                    if scanner.bytes(key, equal: "QMP") { greeted = true }
                    try scanner.skipValue(depth: 0)
                }
                guard scanner.atEnd() else { throw scanner.error("trailing data") }
            }
        } catch {
            var failure = error
            failure.ungreeted = failure.timedOut
            throw failure
        }
        guard greeted else { throw Failure(description: "not a QMP monitor (no greeting)") }
        self.deadline = deadline
        if questions == nil { _ = try execute("qmp_capabilities") } else { _ = try answerValue(to: "qmp_capabilities") }
    }

    /// Takes up a connection kept from an earlier sample for one more, bounded anew by
    /// `deadline` and the socket's byte budget, and sends that sample's `questions` (made by
    /// `text(_:)`): all but their `qmp_capabilities`, negotiated when the session was made.
    func resume(questions: String, deadline: Double) throws(Failure) {
        self.deadline = deadline
        socket.budget = UnixSocket.defaultBudget
        let rest = questions.utf8.firstIndex(of: 0x0A).map { questions.utf8.index(after: $0) } ?? questions.endIndex
        try send(text: questions[rest...])
    }

    /// Lets go of the buffer between samples (`UnixSocket.releaseBuffer`); false when more
    /// than an event's worth is left part read (the connection is then not kept).
    func pause() -> Bool { socket.releaseBuffer(keepingAtMost: Self.leftoverKept) }

    /// Bytes received since the session was made or last resumed.
    var received: Int { UnixSocket.defaultBudget - socket.budget }

    /// Hangs up (the monitor can take its next client at once).
    func close() { socket.close() }

    /// A part line kept between samples at most (QMP's events are a few hundred bytes).
    static let leftoverKept = 4_096

    /// Reads the next line where it was received: `read` gets its bytes.
    private func withNextLine(_ read: (UnsafeBufferPointer<UInt8>) throws(JSONValue.ParseError) -> Void) throws(Failure) {
        do throws(UnixSocket.LineFailure<JSONValue.ParseError>) {
            try socket.withNextLine(deadline: deadline, limit: Self.maxLine, read)
        } catch {
            switch error {
            case .receiving(let error):
                throw Failure(error)
            case .reading(let error):
                throw Failure(description: "\(error)")
            }
        }
    }

    /// Requests as QMP reads them, a line each (for `send(text:)`: made once, sent often).
    static func text(_ requests: [Request]) -> String {
        var text = ""
        for request in requests {
            var members: [(String, JSONValue)] = [("execute", .string(request.command))]
            if let arguments = request.arguments { members.append(("arguments", arguments)) }
            text += JSONValue.object(members).rendered() + "\n"
        }
        return text
    }

    /// Sends `requests` in one write.
    func send(_ requests: [Request]) throws(Failure) { try send(text: Self.text(requests)) }

    /// Sends requests made by `text(_:)` in one write.
    func send(text: some StringProtocol) throws(Failure) {
        do throws(Errno) { try socket.send(text, deadline: deadline) } catch {
            throw Failure(error)
        }
    }

    /// Reads the answer to `command` (sent before): `read` gets the cursor at its `return`
    /// value, and must read it whole. Events before it are skipped; an `error` answer is
    /// thrown with its description.
    func answer(to command: String, _ read: (inout JSONScanner) throws(JSONValue.ParseError) -> Void) throws(Failure) {
        // Events may come between answers; a monitor that sends nothing else is cut off.
        for _ in 0..<Self.maxEventsPerAnswer {
            var kind = Kind.other
            var errorText: [UInt8] = []
            try withNextLine { (bytes) throws(JSONValue.ParseError) in
                var scanner = JSONScanner(bytes)
                try scanner.members(depth: 0) { (scanner, key) throws(JSONValue.ParseError) in
                    if kind == .other, scanner.bytes(key, equal: "return") {
                        kind = .answer
                        try read(&scanner)
                    } else if kind == .other, scanner.bytes(key, equal: "error") {
                        kind = .error
                        let start = scanner.index
                        try scanner.skipValue(depth: 0)
                        errorText = Array(bytes[start..<scanner.index])
                    } else if scanner.bytes(key, equal: "event") {
                        kind = .event
                        try scanner.skipValue(depth: 0)
                    } else {
                        try scanner.skipValue(depth: 0)
                    }
                }
                guard scanner.atEnd() else { throw scanner.error("trailing data") }
            }
            switch kind {
            case .answer: return
            case .event: continue
            case .error:
                let description = (try? JSONValue.parse(bytes: errorText))?["desc"]?.stringValue ?? "error"
                throw Failure(description: "\(command): \(description)")
            case .other:
                throw Failure(description: "\(command): unexpected answer")
            }
        }
        throw Failure(description: "\(command): events without end, no answer")
    }

    private enum Kind {
        case other, answer, error, event
    }

    /// The `return` value of `command`'s answer, as a tree (for small answers).
    func answerValue(to command: String) throws(Failure) -> JSONValue {
        var value = JSONValue.null
        try answer(to: command) { (scanner) throws(JSONValue.ParseError) in
            let start = scanner.index
            try scanner.skipValue(depth: 0)
            value = try JSONValue.parse(bytes: Array(scanner.bytes[start..<scanner.index]))
        }
        return value
    }

    /// Runs `command` and returns its `return` value.
    func execute(_ command: String, arguments: JSONValue? = nil) throws(Failure) -> JSONValue {
        try send([Request(command: command, arguments: arguments)])
        return try answerValue(to: command)
    }

    static let noAnswer = "no answer"
    static let maxEventsPerAnswer = 1_000
    /// One answer's length at most: a 240-vCPU guest's statistics with histograms are about
    /// 0.6 MB.
    static let maxLine = 1 << 20
}
