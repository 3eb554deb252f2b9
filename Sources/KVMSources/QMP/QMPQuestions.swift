import KVMCore

/// What the qmp source asks a guest's monitor each sample, and how it reads the answers (on a
/// worker thread: nothing here touches the source's books).
extension QMPSource {
    /// One guest's answers, read on a worker thread.
    struct Answer: Sendable {
        var schema: Schema?
        var vcpus: [String: Int]?
        var statistics = StatsAnswer()
        var failure: String?
        /// The monitor's path that was asked last (the reserved one's, or the other's).
        var path: String?
        /// The connection to keep for the next sample (to a reserved monitor that answered).
        var kept: QMPSession?
        /// Whether the reserved monitor was asked and answered.
        var reservedAnswered = false
        /// Whether the reserved monitor greeted nobody in time (another client holds it) and
        /// the guest's other monitor was asked instead.
        var reservedHeld = false
        /// Bytes the monitor sent this sample (answered).
        var received = 0
    }

    /// Whom to ask for a guest this sample: its monitor at `path`, over `kept` when kvmstat
    /// stayed connected; `fallback` when `path` is the reserved monitor and the guest has
    /// another, asked if the reserved one greets nobody in time.
    struct Asking: Sendable {
        let monitor: QEMUMonitor
        let path: String
        let kept: QMPSession?
        let fallback: String?
    }

    /// How long a reserved monitor may take to greet before the guest's other monitor is
    /// asked instead (QEMU greets in a millisecond; one serving another client never does).
    static let reservedGreeting = 0.1

    /// Asks a guest's monitor, in one round trip: the capabilities (on a new connection), its
    /// schema when not known yet, its vCPUs' indexes when they may have changed (vCPUs come
    /// and go: hotplug), and its statistics, VM's and vCPUs'. Names are looked up in `numbering` (a copy: this runs on
    /// a worker thread). A kept connection that fails is replaced by a new one at once.
    ///
    /// `sent`: the questions' sending over the kept connection when it was done ahead
    /// (`sendAhead`), nil when not.
    static func ask(_ asking: Asking, needsSchema: Bool, needsVCPUs: Bool, questions: String, deadline: Double,
                    numbering: StatisticNumbering, expecting expected: StatsAnswer.Expectation,
                    sent: Result<Void, QMPSession.Failure>? = nil) -> Answer {
        func fresh() -> Answer {
            var answer = Answer(statistics: StatsAnswer(expecting: expected))
            answer.path = asking.path
            return answer
        }
        var answer = fresh()
        // A kept connection that fails is hung up at once (the monitor serves one client).
        // One that stopped answering (a stalled guest) is not asked again this sample; one that
        // QEMU closed, or that fell out of step, is replaced by a new one at once.
        var replacing = false
        if let kept = asking.kept {
            do throws(QMPSession.Failure) {
                try (sent ?? sendAhead(questions, over: kept, deadline: deadline)).get()
                try converse(kept, needsSchema: needsSchema, needsVCPUs: needsVCPUs, numbering: numbering, into: &answer)
                answer.reservedAnswered = true
                answer.received = kept.received
                if kept.pause() { answer.kept = kept } else { kept.close() }
                return answer
            } catch {
                kept.close()
                answer = fresh()
                if error.timedOut {
                    answer.failure = error.description
                    return answer
                }
                replacing = true
            }
        }
        // The reserved monitor, if it greets in time; else the guest's other one. (A
        // connection of kvmstat's own just hung up is no other client: no fallback then.)
        let fallback = replacing ? nil : asking.fallback
        do throws(QMPSession.Failure) {
            let session: QMPSession
            do throws(QMPSession.Failure) {
                session = try QMPSession(path: asking.path, deadline: deadline, server: asking.monitor.pid, questions: questions,
                                         greetingDeadline: fallback == nil ? nil : Signals.monotonicNow() + reservedGreeting)
            } catch where error.ungreeted && fallback != nil {
                answer.reservedHeld = true
                answer.path = fallback
                session = try QMPSession(path: fallback!, deadline: deadline, server: asking.monitor.pid, questions: questions)
            }
            try converse(session, needsSchema: needsSchema, needsVCPUs: needsVCPUs, numbering: numbering, into: &answer)
            answer.received = session.received
            if asking.monitor.reserved && answer.path == asking.monitor.socketPath {
                answer.reservedAnswered = true
                if session.pause() { answer.kept = session }
            }
        } catch {
            // Not greeted just after hanging up kvmstat's own connection: the monitor has not
            // answered (it may not have seen the hang-up yet), no other client is to blame.
            answer.failure = error.ungreeted && !replacing && answer.path == asking.monitor.socketPath && asking.monitor.reserved
                ? "no answer: its monitor for kvmstat serves another client (another kvmstat?)" : error.description
        }
        return answer
    }

    /// Sends a sample's questions over a kept connection, before its answers are read (by
    /// `ask`, given what this returned): a worker sends the next guest's before it reads this
    /// one's, so that answer is on its way meanwhile, not waited for.
    static func sendAhead(_ questions: String, over kept: QMPSession, deadline: Double) -> Result<Void, QMPSession.Failure> {
        Result { () throws(QMPSession.Failure) in try kept.resume(questions: questions, deadline: deadline) }
    }

    /// Reads the answers to a sample's questions (sent; `qmp_capabilities`' read by the
    /// session): the schema's when asked, then the vCPUs' when asked, and the statistics'.
    private static func converse(_ session: QMPSession, needsSchema: Bool, needsVCPUs: Bool,
                                 numbering: StatisticNumbering, into answer: inout Answer) throws(QMPSession.Failure) {
        if needsSchema { answer.schema = schema(try session.answerValue(to: "query-stats-schemas")) }
        if needsVCPUs {
            var vcpus: [String: Int] = [:]
            try session.answer(to: "query-cpus-fast") { (scanner) throws(JSONValue.ParseError) in
                try readVCPUs(&scanner, into: &vcpus)
            }
            answer.vcpus = vcpus
        }
        for _ in 0..<2 {
            try session.answer(to: "query-stats") { (scanner) throws(JSONValue.ParseError) in
                try answer.statistics.read(&scanner, numbering: numbering)
            }
        }
    }

    /// A sample's questions, made once: `qmp_capabilities`, (`query-stats-schemas`,)
    /// (`query-cpus-fast`,) `query-stats` of the VM and of the vCPUs.
    static func questions(schema: Bool, vcpus: Bool) -> String { questionTexts[(schema ? 2 : 0) + (vcpus ? 1 : 0)] }
    private static let questionTexts = (0..<4).map { QMPSession.text(requests(schema: $0 & 2 != 0, vcpus: $0 & 1 != 0)) }

    static func requests(schema: Bool, vcpus: Bool = true, names: [String]? = nil) -> [QMPSession.Request] {
        // Only `names` of KVM's statistics, when given (QEMU's filter: `providers`).
        let only: [(String, JSONValue)] = names.map { names in
            [("providers", .array([.object([("provider", .string("kvm")), ("names", .array(names.map { .string($0) }))])]))]
        } ?? []
        return [QMPSession.Request(command: "qmp_capabilities")]
            + (schema ? [QMPSession.Request(command: "query-stats-schemas")] : [])
            + (vcpus ? [QMPSession.Request(command: "query-cpus-fast")] : [])
            + ["vm", "vcpu"].map {
                QMPSession.Request(command: "query-stats", arguments: .object([("target", .string($0))] + only))
            }
    }

    /// `query-cpus-fast`'s answer: each vCPU's QOM path and index (paths of QEMU's length,
    /// indexes in KVM's range, as many as KVM allows).
    static func readVCPUs(_ scanner: inout JSONScanner, into vcpus: inout [String: Int]) throws(JSONValue.ParseError) {
        try scanner.elements(depth: 1) { (scanner) throws(JSONValue.ParseError) in
            var path: String?
            var index: UInt64?
            try scanner.members(depth: 2) { (scanner, key) throws(JSONValue.ParseError) in
                if scanner.bytes(key, equal: "qom-path"), scanner.peek() == UInt8(ascii: "\"") {
                    path = try scanner.decodedString()
                } else if scanner.bytes(key, equal: "cpu-index"), let byte = scanner.peek(), (0x30...0x39).contains(byte) {
                    index = try scanner.unsignedNumber()
                } else {
                    try scanner.skipValue(depth: 2)
                }
            }
            guard let path, path.utf8.count <= maxPathLength, let index, index < StatisticNumbering.maxVCPUs,
                  vcpus.count < StatisticNumbering.maxVCPUs else { return }
            vcpus[path] = Int(index)
        }
    }
}
