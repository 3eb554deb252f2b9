import Dispatch
import KVMCore
import Synchronization

/// KVM's binary statistics of every QEMU guest with a QMP monitor on a unix socket
/// (`query-stats`, QEMU ≥ 7.1): the counters debugfs holds, by the same names, readable also
/// when lockdown hides debugfs's. Totals over guests, per-vCPU values as child events
/// (`exits(vcpu0)` under `exits`), and guests for the by-guest view.
///
/// A QEMU monitor serves one client at a time, so kvmstat connects for each sample and hangs
/// up at once: between samples the monitor is free for its operator. A monitor QEMU keeps for
/// kvmstat (chardev id `kvmstat`) is nobody else's: kvmstat stays connected to it (no connection,
/// greeting and negotiation a sample), and asks the guest's other monitor while another client
/// (another kvmstat) holds it. A monitor that does not
/// answer in time (busy with another client, a stopped guest) is reported once and skipped
/// until it answers again; its guest's counts are kept.
public final class QMPSource: StatSource {
    public let name = "qmp"
    public var supportsByGuest: Bool { Self.description.byGuest }

    public static let description = SourceDescription(
        name: "qmp", summary: "KVM's statistics from QEMU monitors (QMP query-stats), per guest and vCPU",
        enabledPhrase: "qmp", byGuest: true, reads: [.pid, .fields, .includePast], defaultRank: nil,
        unavailableReason: { configuration in
            FileSystem.isDirectory(configuration.paths.proc) ? nil
                : "kvmstat: \(configuration.paths.proc) is not readable: QEMU processes cannot be found"
        },
        fields: { configuration in fieldNames(configuration) },
        make: { configuration in QMPSource(configuration: configuration) })

    /// How long one sample may go on starting questions to monitors, and how long one
    /// monitor may take to answer (each its own).
    static let timeout = 0.5
    static let monitorTimeout = 0.3
    /// An answer this big (bytes) makes the sample give freed memory back: its buffers went
    /// past the sizes a guest's answers reuse (8 vCPUs' statistics with histograms are 21 KB;
    /// a 240-vCPU guest's 0.6 MB).
    static let trimAfter = 128 << 10
    /// A monitor that did not answer is asked again every this many samples (so a few that
    /// hang cannot make every sample wait).
    static let retryEvery = 10
    /// A guest's vCPU indexes are asked for when its statistics name a vCPU they do not (one
    /// was plugged: counted from the next sample), and again every this many samples anyway
    /// (a vCPU unplugged and another plugged under its QOM path, between two samples), not
    /// every sample: a big guest's list is a kilobyte and more to send and read.
    static let vcpusRecheck = 10

    /// What kvmstat knows of a guest's monitor; its counts are in `book`.
    struct Guest {
        let monitor: QEMUMonitor
        /// vCPU index by QOM path (from `query-cpus-fast`), and the sample it was asked at.
        var vcpus: [String: Int] = [:]
        var vcpusAsked: Int?
        /// Whether its last answer had a vCPU `vcpus` does not name (one just plugged).
        var vcpuUnknown = false
        /// The sample it stopped answering at, while it does not answer.
        var silentSince: Int?
        /// Whether it was said that some of its values exceed the bounds.
        var trimmed = false
        /// The sample it was last asked at (0: never).
        var lastAsked = 0
        /// What its last answer leads the next to expect (`StatsAnswer.expectation`).
        var expected = StatsAnswer.Expectation()
        /// The sample its reserved monitor was found held by another client at, while it is:
        /// its other monitor is asked meanwhile (the reserved one again every `retryEvery`).
        var reservedHeldSince: Int?
    }

    private let proc: String
    private let architecture: any Architecture
    private let includePast: Bool
    private var filter: FieldFilter?
    private var pid: Int
    private var known: [Int: QEMUMonitors.Known] = [:]
    private var sampleNumber = 0
    private var guests: [Int: Guest] = [:]
    /// Connections to reserved monitors, kept between samples, by guest pid.
    private var kept: [Int: QMPSession] = [:]
    /// Descriptors open, as last counted this sample (nil: not yet).
    private var descriptorsOpen: Int?
    /// Connections kept at most (each a descriptor; another user's fake QEMUs must not take
    /// them all), and descriptors left to everything else (raised to the hard limit if need be).
    static let maxKept = 4_096
    static let descriptorsSpared = 256
    private var book = GuestStatBook()
    private var histogramBook = HistogramBook()
    /// The statistics' kinds of the last schema read, shared by every guest whose schema is
    /// the same (a host's QEMUs mostly are one version).
    private var sharedKinds: [String: StatKind] = [:]
    /// Guests of one QEMU and shape answer alike: the statistics' order each answer has, and
    /// the vCPUs' QOM paths, are kept once for all of them (not a copy each: 2 KB a guest).
    private var sharedExpected = StatsAnswer.Expectation()
    private var sharedVCPUs: [String: Int] = [:]
    /// A guest's answer taken apart, reused from guest to guest (answers are taken one at
    /// a time): no arrays made for each guest each sample.
    private var readingsTaken: [NumberedReading] = []
    private var histogramsTaken: [HistogramBook.Reading] = []
    private var blockVCPUs: [Int32] = []
    private var wantedHistograms: Set<String> = []
    /// What each statistic is, from the guests' schemas.
    private var families: [String: MetricFamily] = [:]
    private var started = false
    /// Whether histograms are shown (`ReadRequest.histograms`): when not, guests are asked
    /// for their other statistics only (a guest's histograms are most of its numbers).
    private var askHistograms = true
    /// The questions without histograms for the last table of kinds they were made for
    /// (without and with `query-cpus-fast`).
    private var filtered: (kinds: [String: StatKind], texts: [String])?
    private var warnings: [String] = []
    private var emptyNotice = EmptyNotice()
    static let noMonitor = "qmp: no QEMU with a QMP monitor on a unix socket is running (start QEMU with "
        + "-qmp unix:PATH,server=on,wait=off; libvirt's guests are the libvirt source's): nothing to show until one starts"

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
                  let session = try? QMPSession(path: monitor.socketPath, deadline: deadline, server: monitor.pid),
                  let kinds = try? schema(session).kinds
            else { continue }
            return kinds.filter { $0.value != .histogram }.keys.sorted()
        }
        return []
    }

    public func availableFields() -> [String] { book.fields }

    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        self.filter = filter
        selectFields()
    }

    public func setPid(_ pid: Int) throws(SourceError) { self.pid = pid }

    public func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        askHistograms = request.histograms
        poll()
        var reading = book.reading(request, pid: pid, families: families, origin: name)
        if askHistograms {
            reading.histograms = histogramBook.totals(wanted: wantedHistograms, pid: pid, numbering: book.numbering)
        }
        reading.warnings = warnings
        warnings.removeAll()
        return reading
    }

    /// New baselines from the values read now; guests not read now (out of view, silent)
    /// take theirs when next read, and nothing counts from zero any more.
    public func reset() throws(SourceError) {
        book.reset(readNow: poll())
    }

    public func close() { kept.removeAll() }

    /// Whether one more connection may be kept: within `maxKept` and the open-files limit
    /// (with `descriptorsSpared` left over the descriptors open now), whose soft limit is
    /// raised (up to the hard one) when needed.
    private func mayKeepAnother() -> Bool {
        guard kept.count < Self.maxKept else { return false }
        // Counted once a sample (not once a connection: hundreds come at a first sample).
        let open = descriptorsOpen ?? ProcessResources.openDescriptorCount(proc: proc) ?? kept.count
        let needed = open + 1 + Self.descriptorsSpared
        if ResourceLimits.openFilesSoftLimit() < needed { try? ResourceLimits.ensureOpenFiles(needed + Self.descriptorsSpared) }
        guard ResourceLimits.openFilesSoftLimit() >= needed else {
            descriptorsOpen = open
            return false
        }
        descriptorsOpen = open + 1
        return true
    }

    /// Bounds on what a monitor — any process's, a user's fake one too — makes kvmstat keep:
    /// a statistic's name (KVM's are under 40 bytes, letters, digits and `_`), and the values
    /// of one guest a sample (every statistic of every vCPU: 240 vCPUs × 40 statistics fit).
    static let maxNameLength = 64
    static let maxValues = 16_384
    static let maxFamilies = 2 * GuestStatBook.maxStatistics

    /// A vCPU's QOM path at most (QEMU's are under 40 bytes: `/machine/unattached/device[12]`).
    static let maxPathLength = 256

    static func acceptable(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { acceptable($0) }
    }

    static func acceptable(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        !name.isEmpty && name.count <= maxNameLength
            && name.allSatisfy { $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || (48...57).contains($0)
                || (65...90).contains($0) || (97...122).contains($0) }
    }

    /// The wanted fields: the filter's, statistics and per-vCPU children (`exits(vcpu1)`)
    /// alike as with tracepoints' children, and the parent of each wanted child.
    private func selectFields() {
        book.select(filter)
        let histogramNames = histogramBook.names(book.numbering)
        wantedHistograms = Set(filter.select(histogramNames, parentOf: FieldName.tracepointParent(of:))
            .map { histogramNames[$0] })
    }

    /// A sample's questions for a guest whose statistics are `kinds`, without its histograms:
    /// made once for each table of kinds (a host's QEMUs mostly share one); nil when there
    /// are none to leave out.
    private func questionsWithoutHistograms(_ kinds: [String: StatKind], vcpus: Bool) -> String? {
        if let filtered, filtered.kinds == kinds { return filtered.texts[vcpus ? 1 : 0] }
        let names = kinds.filter { $0.value != .histogram }.keys.sorted()
        guard !names.isEmpty, names.count < kinds.count else { return nil }
        let texts = [false, true].map { QMPSession.text(Self.requests(schema: false, vcpus: $0, names: names)) }
        filtered = (kinds, texts)
        return texts[vcpus ? 1 : 0]
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
        if let notice = emptyNotice.check(empty: monitors.isEmpty, Self.noMonitor) { warnings.append(notice) }
        // Guests whose process has gone keep what they counted.
        for guestPid in guests.keys where !present.contains(guestPid) {
            guests[guestPid] = nil
            kept[guestPid] = nil
            histogramBook.forget(guestPid)
        }
        book.keepOnly(present, watching: pid, proc: proc)
        // A guest that ran before kvmstat started counts from its first reading (or from zero
        // with -i); one started later counts everything.
        for monitor in monitors where guests[monitor.pid] == nil {
            guests[monitor.pid] = Guest(monitor: monitor)
            book.admit(monitor.pid, name: monitor.name, countsFromZero: !initial || includePast)
        }
        // Ask the guests in view (only those: a monitor is not disturbed for nothing) on 4
        // threads (more contend for the CPUs and make samples late), each within the timeout.
        let sampleNumber = self.sampleNumber
        let inView = monitors.filter { pid == 0 || $0.pid == pid }
        // Guests out of view (`-p`, the screen's filter) are not read: their monitors are let go.
        if pid != 0 { for guestPid in kept.keys where guestPid != pid { kept[guestPid] = nil } }
        descriptorsOpen = nil
        // Monitors that answered last time first; silent ones, retried every `retryEvery`
        // samples spread over them by pid (many that fell silent together do not all come
        // back on one sample), get what time is left.
        // Within each, the longest unasked first: where the sample's time runs out before
        // every monitor is asked (hundreds of guests on a loaded host), the next sample
        // starts with those left out, so every guest is read in turn, not the same few.
        // (Each guest looked up once: a sort's comparisons copying guests out of the table
        // were a visible part of a 500-guest sample.)
        var answering: [(monitor: QEMUMonitor, guest: Guest)] = []
        var silent: [(monitor: QEMUMonitor, guest: Guest)] = []
        for monitor in inView {
            guard let guest = guests[monitor.pid] else { continue }
            if let since = guest.silentSince {
                if (sampleNumber - since + monitor.pid) % Self.retryEvery == 0 { silent.append((monitor, guest)) }
            } else {
                answering.append((monitor, guest))
            }
        }
        let stalest = { (a: (monitor: QEMUMonitor, guest: Guest), b: (monitor: QEMUMonitor, guest: Guest)) in
            (a.guest.lastAsked, a.monitor.pid) < (b.guest.lastAsked, b.monitor.pid)
        }
        let sorted = answering.sorted(by: stalest) + silent.sorted(by: stalest)
        let ordered = sorted.map(\.monitor)
        let orderedGuests = sorted.map(\.guest)
        let kinds = ordered.map { book.kinds(of: $0.pid) }
        let needsSchema = kinds.map(\.isEmpty)
        // A guest's vCPUs with its schema, then when one may have come or been replaced.
        let needsVCPUs = zip(orderedGuests, needsSchema).map { guest, needsSchema in
            needsSchema || guest.vcpuUnknown || guest.vcpusAsked.map { sampleNumber - $0 >= Self.vcpusRecheck } ?? true
        }
        let questions = zip(kinds, needsVCPUs).map { kinds, vcpus in
            kinds.isEmpty ? Self.questions(schema: true, vcpus: true)
                : askHistograms ? Self.questions(schema: false, vcpus: vcpus)
                : questionsWithoutHistograms(kinds, vcpus: vcpus) ?? Self.questions(schema: false, vcpus: vcpus)
        }
        let expected = orderedGuests.map(\.expected)
        // A reserved monitor over the connection kept, or anew; the guest's other monitor
        // while another client holds it (the reserved one tried again every `retryEvery`).
        let askings = zip(ordered, orderedGuests).map { monitor, guest in
            let heldSince = guest.reservedHeldSince
            if let shared = monitor.sharedPath, let heldSince, sampleNumber - heldSince < Self.retryEvery {
                return Asking(monitor: monitor, path: shared, kept: nil, fallback: nil)
            }
            return Asking(monitor: monitor, path: monitor.socketPath, kept: kept[monitor.pid],
                          fallback: monitor.reserved ? monitor.sharedPath : nil)
        }
        let workers = min(ordered.count, 4)
        // Each monitor has a deadline of its own (one that stalls costs the others nothing);
        // none is started once the sample's time is up. Each answer is taken as soon as it
        // is read (one at a time: the books are this thread's and the workers' in turn), so
        // no more than one answer a worker is held at once, however many guests there are.
        let sampleDeadline = Signals.monotonicNow() + Self.timeout
        let numbering = book.numbering
        let taking = Mutex(Set<Int>())
        // Whether an answer was big enough, or went wrong, to leave memory worth giving back.
        let bulky = Atomic<Bool>(false)
        // The workers use this source only within `taking`'s lock, one at a time, while
        // this thread waits for them.
        nonisolated(unsafe) let source = self
        if workers > 0 {
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                var i = worker
                // The questions of the guest at `i`, when sent ahead over its kept connection
                // (its answer then read, whatever the time: it is on its way).
                var sent: Result<Void, QMPSession.Failure>?
                while i < ordered.count {
                    let now = Signals.monotonicNow()
                    guard sent != nil || now < sampleDeadline else { break }
                    // The worker's next guest is asked before this one's answer is read: a
                    // monitor answers while the one before is parsed, not while a worker sleeps.
                    let next = i + workers
                    var nextSent: Result<Void, QMPSession.Failure>?
                    if next < ordered.count, now < sampleDeadline, let kept = askings[next].kept {
                        nextSent = Self.sendAhead(questions[next], over: kept, deadline: now + Self.monitorTimeout)
                    }
                    let answer = Self.ask(askings[i], needsSchema: needsSchema[i], needsVCPUs: needsVCPUs[i],
                                          questions: questions[i],
                                          deadline: now + Self.monitorTimeout, numbering: numbering,
                                          expecting: expected[i], sent: sent)
                    sent = nextSent
                    let monitor = ordered[i]
                    if answer.failure != nil || answer.received > Self.trimAfter { bulky.store(true, ordering: .relaxed) }
                    taking.withLock { answered in
                        source.keep(answer, for: monitor.pid)
                        if source.take(answer, for: monitor) { answered.insert(monitor.pid) }
                    }
                    i = next
                }
            }
        }
        selectFields()
        // What big answers took goes back to the system at once (a hostile monitor's are up
        // to a megabyte a line), as does what a failed one left. Not after every sample: the
        // pages given back one by one are faulted in again by the next (at 500 guests, a
        // dozen `madvise` calls a sample, each interrupting every CPU the process runs on).
        if bulky.load(ordering: .relaxed) { HeapMemory.trim() }
        return taking.withLock { $0 }
    }

    /// Keeps the answer's connection for the next sample (when one more may be kept).
    private func keep(_ answer: Answer, for pid: Int) {
        let session = answer.kept
        if session == nil || guests[pid] == nil {
            kept[pid] = nil
        } else if kept[pid] !== session {
            // A new connection: kept when one more may be (the limits looked at only then).
            kept[pid] = nil
            if mayKeepAnother() { kept[pid] = session }
        }
    }

    /// Takes a guest's answer; false when it gave none. Notes that it was asked, and whether
    /// its reserved monitor is held by another client.
    private func take(_ answer: Answer, for monitor: QEMUMonitor) -> Bool {
        // Taken out of the table meanwhile (not copied: its arrays are changed in place).
        guard var guest = guests.removeValue(forKey: monitor.pid) else { return false }
        defer { guests[monitor.pid] = guest }
        guest.lastAsked = sampleNumber
        if answer.reservedHeld {
            // Tried again `retryEvery` samples after it was last found held.
            guest.reservedHeldSince = sampleNumber
        } else if answer.reservedAnswered {
            guest.reservedHeldSince = nil
        }
        if let failure = answer.failure {
            // A guest that quit between discovery and query is gone, not silent: it departs
            // at the next sample, keeping its counts, without a warning.
            guard Guests(proc: proc).isRunning(monitor.pid) else { return false }
            if guest.silentSince == nil {
                warnings.append("qmp: guest \(monitor.label) "
                    + "at \(answer.path ?? monitor.socketPath): \(failure); skipped until it answers, its counts kept")
                guest.silentSince = sampleNumber
            }
            return false
        }
        guest.silentSince = nil
        let statistics = answer.statistics
        sharedExpected = statistics.expectation(reusing: sharedExpected)
        guest.expected = sharedExpected
        if statistics.dropped && guest.trimmed == false {
            guest.trimmed = true
            warnings.append("qmp: guest \(monitor.label) reports "
                + "statistics beyond kvmstat's bounds (names over \(Self.maxNameLength) bytes or not [A-Za-z0-9_-], "
                + "more than \(Self.maxValues) values or \(GuestStatBook.maxStatistics) statistics): those are left out")
        }
        if let schema = answer.schema {
            // Descriptions of as many statistics as the book keeps (guests that come and go
            // with ever new names must not grow them).
            for (name, family) in schema.families where families[name] != nil || families.count < Self.maxFamilies {
                families[name] = family
            }
            // Guests of one QEMU share one table of kinds (not one each).
            if schema.kinds != sharedKinds { sharedKinds = schema.kinds }
            book.setKinds(sharedKinds, of: monitor.pid)
            histogramBook.setShapes(schema.histograms, of: monitor.pid)
        }
        if let vcpus = answer.vcpus {
            if vcpus != sharedVCPUs { sharedVCPUs = vcpus }
            guest.vcpus = sharedVCPUs
            guest.vcpusAsked = sampleNumber
            guest.vcpuUnknown = false
        }
        let kinds = book.kinds(of: monitor.pid)
        // New names are numbered only when the guest's schema has them: a monitor's made-up
        // names cannot fill the table others' statistics need.
        let newNumbers: [Int32] = statistics.newNames.map { name in
            kinds[name] != nil ? book.statisticNumber(name) ?? -1 : -1
        }
        // A vCPU the index list does not name (it just came) is counted from the next sample.
        blockVCPUs.removeAll(keepingCapacity: true)
        for path in statistics.blocks {
            guard let path else {
                blockVCPUs.append(-1)
                continue
            }
            guard let index = guest.vcpus[path] else {
                guest.vcpuUnknown = true
                blockVCPUs.append(-2)
                continue
            }
            blockVCPUs.append((0..<StatisticNumbering.maxVCPUs).contains(index) ? Int32(index) : -2)
        }
        var readings = readingsTaken
        var histograms = histogramsTaken
        readingsTaken = []
        histogramsTaken = []
        defer {
            readings.removeAll(keepingCapacity: true)
            histograms.removeAll(keepingCapacity: true)
            readingsTaken = readings
            histogramsTaken = histograms
        }
        for value in statistics.values {
            let vcpu = blockVCPUs[Int(value.block)]
            let statistic = value.statistic >= 0 ? value.statistic : newNumbers[Int(-1 - value.statistic)]
            guard vcpu >= -1, statistic >= 0 else { continue }
            if value.bucketsEnd >= 0 {
                guard let field = book.fieldNumber(statistic, vcpu: vcpu) else { continue }
                histograms.append(HistogramBook.Reading(field: field, statistic: statistic,
                                                        buckets: Int(value.number)..<Int(value.bucketsEnd)))
                continue
            }
            readings.append(NumberedReading(statistic: statistic, vcpu: vcpu, value: value.number))
        }
        histogramBook.record(histograms, buckets: statistics.buckets, numbering: book.numbering, of: monitor.pid)
        for name in book.record(numbered: readings, of: monitor.pid) {
            warnings.append("qmp: \(name) of guest pid \(monitor.pid) went backwards; counted from the new value")
        }
        return true
    }

}
