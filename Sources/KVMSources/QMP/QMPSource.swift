import Dispatch
import KVMCore

/// KVM's binary statistics of every QEMU guest with a QMP monitor on a unix socket
/// (`query-stats`, QEMU ≥ 7.1): the counters debugfs holds, by the same names, readable also
/// when lockdown hides debugfs's. Totals over guests, per-vCPU values as child events
/// (`exits(vcpu0)` under `exits`), and guests for the by-guest view.
///
/// A QEMU monitor serves one client at a time, so kvmstat connects for each sample and hangs
/// up at once: between samples the monitor is free for its operator. A monitor that does not
/// answer in time (busy with another client, a stopped guest) is reported once and skipped
/// until it answers again; its guest's counts are kept.
public final class QMPSource: StatSource {
    public let name = "qmp"
    public var supportsByGuest: Bool { Self.description.byGuest }

    public static let description = SourceDescription(
        name: "qmp", summary: "KVM's statistics from QEMU monitors (QMP query-stats), per guest and vCPU",
        enabledPhrase: "qmp", onlyHint: "debugfs or qmp", byGuest: true, byVCPU: true,
        reads: [.pid, .fields, .includePast], defaultRank: nil,
        unavailableReason: { configuration in
            FileSystem.isDirectory(configuration.paths.proc) ? nil
                : "kvmstat: \(configuration.paths.proc) is not readable: QEMU processes cannot be found"
        },
        fields: { configuration in fieldNames(configuration) },
        make: { configuration in QMPSource(configuration: configuration) })

    /// How long the guests' monitors may take to answer one sample, all together.
    static let timeout = 0.5
    /// A monitor that did not answer is asked again every this many samples (so a few that
    /// hang cannot make every sample wait).
    static let retryEvery = 10

    enum Kind { case counter, level, histogram }

    struct Guest {
        let monitor: QEMUMonitor
        var kinds: [String: Kind] = [:]
        /// vCPU index by QOM path (from `query-cpus-fast`).
        var vcpus: [String: Int] = [:]
        var last: [EventID: UInt64] = [:]
        var counted: [EventID: UInt64] = [:]
        var countsFromZero: Bool
        /// The sample it stopped answering at, while it does not answer.
        var silentSince: Int?
    }

    private let proc: String
    private let architecture: any Architecture
    private let includePast: Bool
    private var filter: FieldFilter?
    private var pid: Int
    private var known: [Int: QEMUMonitors.Known] = [:]
    private var sampleNumber = 0
    /// Every statistic any guest ever had: departed guests' counts stay reported.
    private var allFields: Set<String> = []
    private var guests: [Int: Guest] = [:]
    private var departed = DepartedCounts<EventID>()
    private var started = false
    private var warnings: [String] = []
    private var oddities: Set<String> = []
    private var wanted: Set<String> = []
    private var fields: [String] = []

    public init(configuration: SourceConfiguration) {
        proc = configuration.paths.proc
        architecture = configuration.architecture
        includePast = configuration.includePast
        filter = configuration.fieldFilter
        pid = configuration.pid
        poll()
    }

    /// Every statistic the first QEMU that answers knows (its schema), within one timeout in
    /// all; none without a guest. (Asking a monitor opens no counter.)
    static func fieldNames(_ configuration: SourceConfiguration) -> [String] {
        var known: [Int: QEMUMonitors.Known] = [:]
        let deadline = Signals.monotonicNow() + timeout
        for monitor in QEMUMonitors.all(proc: configuration.paths.proc, known: &known, sample: 0) ?? []
        where configuration.pid == 0 || monitor.pid == configuration.pid {
            guard Signals.monotonicNow() < deadline,
                  let session = try? QMPSession(path: monitor.socketPath, deadline: deadline),
                  let kinds = try? schema(session)
            else { continue }
            return kinds.filter { $0.value != .histogram }.keys.sorted()
        }
        return []
    }

    public func availableFields() -> [String] { fields }

    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        self.filter = filter
        selectFields()
    }

    public func setPid(_ pid: Int) throws(SourceError) { self.pid = pid }

    public func read(byGuest: Bool) throws(SourceError) -> [EventID: UInt64] {
        poll()
        return totals(byGuest: byGuest)
    }

    /// New baselines from the values read now; guests not read now (out of view, silent)
    /// take theirs when next read, and nothing counts from zero any more.
    public func reset() throws(SourceError) {
        let readNow = poll()
        for key in guests.keys {
            guests[key]!.counted = guests[key]!.counted.mapValues { _ in 0 }
            guests[key]!.countsFromZero = false
            if !readNow.contains(key) { guests[key]!.last.removeAll() }
        }
        departed.removeAll()
    }

    public func takeWarnings() -> [String] {
        defer { warnings.removeAll() }
        return warnings
    }

    public func close() {}

    /// The statistics' kinds, from `query-stats-schemas` (vm and vcpu targets).
    static func schema(_ session: QMPSession) throws(QMPSession.Failure) -> [String: Kind] {
        var kinds: [String: Kind] = [:]
        for provider in try session.execute("query-stats-schemas").arrayValue ?? [] {
            for stat in provider["stats"]?.arrayValue ?? [] {
                guard let name = stat["name"]?.stringValue else { continue }
                switch stat["type"]?.stringValue {
                case "cumulative": kinds[name] = .counter
                case "instant", "peak": kinds[name] = .level
                default: kinds[name] = .histogram
                }
            }
        }
        return kinds
    }

    /// The wanted fields: the filter's, statistics and per-vCPU children (`exits(vcpu1)`)
    /// alike as with tracepoints' children, and the parent of each wanted child.
    private func selectFields() {
        allFields.formUnion(guests.values.flatMap { $0.kinds.filter { $0.value != .histogram }.keys })
        allFields.formUnion(guests.values.flatMap { $0.last.keys.filter(\.isChild).map(\.name) })
        fields = allFields.sorted()
        wanted = Set(filter.select(fields, parentOf: FieldName.tracepointParent(of:)).map { fields[$0] })
    }

    /// One guest's answers, read on a worker thread.
    struct Answer: Sendable {
        var kinds: [String: Kind]?
        var vcpus: [String: Int]?
        /// (statistic, the vCPU's QOM path or nil for the VM, value)
        var values: [(String, String?, JSONValue)] = []
        var failure: String?
    }

    static func ask(_ monitor: QEMUMonitor, needsSchema: Bool, deadline: Double) -> Answer {
        var answer = Answer()
        do throws(QMPSession.Failure) {
            let session = try QMPSession(path: monitor.socketPath, deadline: deadline)
            if needsSchema { answer.kinds = try schema(session) }
            // vCPUs come and go (hotplug): their indexes are asked each time.
            var vcpus: [String: Int] = [:]
            for cpu in try session.execute("query-cpus-fast").arrayValue ?? [] {
                if let path = cpu["qom-path"]?.stringValue, case .int(let index)? = cpu["cpu-index"] {
                    vcpus[path] = index
                }
            }
            answer.vcpus = vcpus
            for target in ["vm", "vcpu"] {
                let result = try session.execute("query-stats", arguments: .object([("target", .string(target))]))
                for provider in result.arrayValue ?? [] where provider["provider"]?.stringValue == "kvm" {
                    let path = provider["qom-path"]?.stringValue
                    for stat in provider["stats"]?.arrayValue ?? [] {
                        guard let name = stat["name"]?.stringValue, let value = stat["value"] else { continue }
                        answer.values.append((name, path, value))
                    }
                }
            }
        } catch {
            answer.failure = error.description
        }
        return answer
    }

    /// Reads the guests in view; returns the pids that answered.
    @discardableResult
    private func poll() -> Set<Int> {
        let initial = !started
        started = true
        sampleNumber += 1
        // A /proc that cannot be listed is no news: the guests known stay.
        let monitors = QEMUMonitors.all(proc: proc, known: &known, sample: sampleNumber)
            ?? guests.values.map(\.monitor)
        let present = Set(monitors.map(\.pid))
        // Guests whose process has gone keep what they counted.
        let gone = guests.keys.filter { !present.contains($0) }
        for guestPid in gone {
            let guest = guests.removeValue(forKey: guestPid)!
            for (key, value) in guest.counted where guest.kinds[key.parent ?? key.name] == .counter {
                departed.add(value, for: key, guest: guestPid)
            }
        }
        if !gone.isEmpty { departed.forgetEnded(watching: pid, proc: proc) }
        // A guest that ran before kvmstat started counts from its first reading (or from zero
        // with -i); one started later counts everything.
        for monitor in monitors where guests[monitor.pid] == nil {
            guests[monitor.pid] = Guest(monitor: monitor, countsFromZero: !initial || includePast)
        }
        // Ask the guests in view (only those: a monitor is not disturbed for nothing) on 4
        // threads (more contend for the CPUs and make samples late), each within the timeout.
        let sampleNumber = self.sampleNumber
        let asked = monitors.filter { monitor in
            guard pid == 0 || monitor.pid == pid else { return false }
            guard let since = guests[monitor.pid]!.silentSince else { return true }
            return (sampleNumber - since) % Self.retryEvery == 0
        }
        let needsSchema = asked.map { guests[$0.pid]!.kinds.isEmpty }
        let slots = asked.map { _ in AnswerSlot() }
        let workers = min(asked.count, 4)
        let deadline = Signals.monotonicNow() + Self.timeout
        if workers > 0 {
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                var i = worker
                while i < asked.count {
                    slots[i].answer = Self.ask(asked[i], needsSchema: needsSchema[i], deadline: deadline)
                    i += workers
                }
            }
        }
        var answered = Set<Int>()
        for (monitor, slot) in zip(asked, slots) where take(slot.answer, for: monitor) { answered.insert(monitor.pid) }
        selectFields()
        return answered
    }

    /// Takes a guest's answer; false when it gave none.
    private func take(_ answer: Answer, for monitor: QEMUMonitor) -> Bool {
        var guest = guests[monitor.pid]!
        defer { guests[monitor.pid] = guest }
        if let failure = answer.failure {
            // A guest that quit between discovery and query is gone, not silent: it departs
            // at the next sample, keeping its counts, without a warning.
            guard Guests(proc: proc).isRunning(monitor.pid) else { return false }
            if guest.silentSince == nil {
                warnings.append("qmp: guest \(monitor.name.isEmpty ? "?" : monitor.name) (pid \(monitor.pid)) "
                    + "at \(monitor.socketPath): \(failure); skipped until it answers, its counts kept")
                guest.silentSince = sampleNumber
            }
            return false
        }
        guest.silentSince = nil
        if let kinds = answer.kinds { guest.kinds = kinds }
        if let vcpus = answer.vcpus { guest.vcpus = vcpus }
        for (name, path, json) in answer.values {
            // A vCPU the index list does not name (it just came) is counted from the next sample.
            if let path, guest.vcpus[path] == nil { continue }
            let vcpu = path.map { guest.vcpus[$0]! }
            let kind = guest.kinds[name] ?? .counter
            guard kind != .histogram else { continue }
            let value: UInt64
            switch json {
            case .bool(let flag): value = flag ? 1 : 0
            default:
                guard let number = json.uint64Value else { continue }
                value = number
            }
            let key = vcpu.map { EventID("\(name)(vcpu\($0))", parent: name, vcpu: $0) } ?? EventID(name)
            guard let previous = guest.last[key] else {
                guest.last[key] = value
                guest.counted[key] = kind == .counter && guest.countsFromZero ? value : 0
                continue
            }
            guest.last[key] = value
            guard kind == .counter else { continue }
            let step = Counting.step(from: previous, to: value)
            guest.counted[key, default: 0] &+= step.amount
            if step.wentBackwards && oddities.insert(name).inserted {
                warnings.append("qmp: \(name) of guest pid \(monitor.pid) went backwards; counted from the new value")
            }
        }
        return true
    }

    /// Sums over the guests in view: per statistic (vm values and the sum of the vCPUs'),
    /// per vCPU as children, or per guest.
    private func totals(byGuest: Bool) -> [EventID: UInt64] {
        var results: [EventID: UInt64] = [:]
        for field in wanted where FieldName.tracepointParent(of: field) == nil { results[EventID(field)] = 0 }
        // A value goes to its own row when wanted, and a vCPU's also into its statistic's
        // total (vCPU statistics exist only per vCPU, so nothing is counted twice).
        func add(_ key: EventID, _ amount: UInt64) {
            if wanted.contains(key.name) { results[key, default: 0] &+= amount }
            if let parent = key.parent, wanted.contains(parent) { results[EventID(parent), default: 0] &+= amount }
        }
        for (guestPid, guest) in guests where pid == 0 || guestPid == pid {
            if byGuest { results[.guestTotal(guestPid), default: 0] &+= 0 }
            for (key, last) in guest.last {
                let field = key.parent ?? key.name
                guard wanted.contains(field) || wanted.contains(key.name), let kind = guest.kinds[field] else { continue }
                let amount = kind == .counter ? guest.counted[key] ?? 0 : last
                if byGuest {
                    // A guest's row sums its events (counters only).
                    if kind == .counter && wanted.contains(field) {
                        results[.guestTotal(guestPid), default: 0] &+= amount
                    }
                    continue
                }
                add(key, amount)
            }
        }
        if !byGuest {
            for (key, value) in departed.counts(watching: pid) { add(key, value) }
        }
        if byGuest { for field in wanted { results[EventID(field)] = nil } }
        return results
    }
}

/// One guest's answer from a worker thread; each slot is written by one worker only and read
/// after all have finished.
private final class AnswerSlot: @unchecked Sendable {
    var answer = QMPSource.Answer()
}
