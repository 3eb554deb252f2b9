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
    }

    /// Asks a guest's monitor, in one round trip: the capabilities, its schema when not known
    /// yet, its vCPUs' indexes (vCPUs come and go: hotplug), and its statistics, VM's and
    /// vCPUs'. Names are looked up in `numbering` (a copy: this runs on a worker thread).
    static func ask(_ monitor: QEMUMonitor, needsSchema: Bool, questions: String, deadline: Double,
                    numbering: StatisticNumbering, expecting expected: [Int32]) -> Answer {
        var answer = Answer(statistics: StatsAnswer(expecting: expected))
        do throws(QMPSession.Failure) {
            let session = try QMPSession(path: monitor.socketPath, deadline: deadline, server: monitor.pid,
                                         questions: questions)
            _ = try session.answerValue(to: "qmp_capabilities")
            if needsSchema { answer.schema = schema(try session.answerValue(to: "query-stats-schemas")) }
            var vcpus: [String: Int] = [:]
            try session.answer(to: "query-cpus-fast") { (scanner) throws(JSONValue.ParseError) in
                try readVCPUs(&scanner, into: &vcpus)
            }
            answer.vcpus = vcpus
            for _ in 0..<2 {
                try session.answer(to: "query-stats") { (scanner) throws(JSONValue.ParseError) in
                    try answer.statistics.read(&scanner, numbering: numbering)
                }
            }
        } catch {
            answer.failure = error.description
        }
        return answer
    }

    /// A sample's questions, made once: `qmp_capabilities`, (`query-stats-schemas`,)
    /// `query-cpus-fast`, `query-stats` of the VM and of the vCPUs.
    static let questions = QMPSession.text(requests(schema: false))
    static let questionsWithSchema = QMPSession.text(requests(schema: true))

    static func requests(schema: Bool, names: [String]? = nil) -> [QMPSession.Request] {
        // Only `names` of KVM's statistics, when given (QEMU's filter: `providers`).
        let only: [(String, JSONValue)] = names.map { names in
            [("providers", .array([.object([("provider", .string("kvm")), ("names", .array(names.map { .string($0) }))])]))]
        } ?? []
        return [QMPSession.Request(command: "qmp_capabilities")]
            + (schema ? [QMPSession.Request(command: "query-stats-schemas")] : [])
            + [QMPSession.Request(command: "query-cpus-fast")]
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
