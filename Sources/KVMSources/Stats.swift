import KVMCore

/// Merges the chosen sources' readings into samples — `(value, delta)` per event, each key
/// qualified by the source that counted it, so that no source overwrites another's — and
/// carries the filters the screen and command line change (upstream's Stats).
public final class Stats {
    public let sources: [any StatSource]
    public private(set) var fieldsFilter: FieldFilter?
    public private(set) var pidFilter: Int
    /// Whether child events (`kvm_exit(HLT)`) are shown; counting does not depend on it.
    public var childEvents = false
    public private(set) var values: [EventID: EventStat] = [:]
    /// When the last sample was read (monotonic seconds), for its interval.
    private var lastRead: Double?
    private var warnings: [String] = []

    /// Whether a source's last read succeeded, and when one last did (the endpoint's
    /// `kvmstat_source_up`).
    public struct SourceHealth: Sendable, Equatable {
        public var up: Bool
        /// When a read last succeeded (nil: never).
        public var lastSuccess: WallClock?
        /// Reads that failed since kvmstat started.
        public var failures: UInt64
    }

    /// Each source's health, by name, as of the last read.
    public private(set) var health: [String: SourceHealth] = [:]
    /// Each source's families as its last good read gave them (a failed source's counts
    /// are still described).
    private var lastFamilies: [String: [String: MetricFamily]] = [:]

    /// With `keepsGoing` (the endpoint, as node_exporter's collectors do), a source whose read
    /// fails is reported down — its last values kept, never zeroed, its error said once a
    /// spell — and the others are still sampled. Else (the screen, -1, -l) the failure ends
    /// kvmstat with its message, as upstream's does.
    public var keepsGoing = false

    public init(sources: [any StatSource], pid: Int = 0, fieldsFilter: FieldFilter? = nil) {
        self.sources = sources
        self.pidFilter = pid
        self.fieldsFilter = fieldsFilter
    }

    /// A new filter resets the table: the sources count the new fields from zero.
    public func setFieldsFilter(_ filter: FieldFilter?) throws(SourceError) {
        guard filter?.pattern != fieldsFilter?.pattern else { return }
        fieldsFilter = filter
        values.removeAll()
        for source in sources { try source.updateFields(filter) }
    }

    public func setPidFilter(_ pid: Int) throws(SourceError) {
        guard pid != pidFilter else { return }
        pidFilter = pid
        values.removeAll()
        for source in sources { try source.setPid(pid) }
    }

    /// Reads every source once and merges what they read into a sample; its interval is the
    /// time since the previous read (0 for the first).
    public func read(_ request: ReadRequest = ReadRequest()) throws(SourceError) -> Sample {
        let now = Signals.monotonicNow()
        let time = WallClock.now()
        var families: [String: [String: MetricFamily]] = [:]
        var guestValues = GuestValues()
        var histograms: [EventID: Histogram] = [:]
        var guestNames: [Int: String] = [:]
        // The keys each source reported (to tell the rows no source reports any more): only
        // those, not the whole reading (whose guests' table merged below is not held twice).
        var reportedKeys: [(origin: String, keys: Dictionary<EventID, UInt64>.Keys)] = []
        var reported = 0
        var failed = Set<String>()
        for source in sources {
            let origin = source.name
            let reading: Reading
            do throws(SourceError) {
                reading = try source.read(request)
                health[origin] = SourceHealth(up: true, lastSuccess: time, failures: health[origin]?.failures ?? 0)
            } catch {
                guard keepsGoing else { throw error }
                var state = health[origin] ?? SourceHealth(up: true, lastSuccess: nil, failures: 0)
                if state.up {
                    warnings.append("source \(origin): \(error.description) (reported down, its last counts kept, "
                        + "until a read succeeds)")
                }
                state.up = false
                state.failures &+= 1
                health[origin] = state
                failed.insert(origin)
                families[origin] = lastFamilies[origin]
                continue
            }
            reportedKeys.append((origin, reading.values.keys))
            families[origin] = reading.families
            if keepsGoing { lastFamilies[origin] = reading.families }
            for (key, newValue) in reading.values {
                let qualified = key.from(origin)
                values[qualified] = EventStat(value: newValue, previous: values[qualified]?.value ?? 0)
            }
            reported += reading.values.count
            // Taken as they are when the source keyed them as its own (no copy of a big
            // host's hundreds of thousands), else keyed here, column by column.
            guestValues.merge(reading.guestValues, from: origin)
            for (key, histogram) in reading.histograms { histograms[key.from(origin)] = histogram }
            if !reading.guestNames.isEmpty { guestNames.merge(reading.guestNames) { first, _ in first } }
            if !reading.warnings.isEmpty { warnings += reading.warnings }
        }
        // Rows no source reports any more (a guest that quit, whose counts went to another
        // row; events of the other view) are left out rather than shown stale. In the steady
        // state every row is reported again and the table is updated in place.
        if values.count != reported {
            let current = Set(reportedKeys.flatMap { item in item.keys.map { $0.from(item.origin) } })
            values = values.filter { current.contains($0.key) || failed.contains($0.key.source ?? "") }
        }
        // A failed source's counts stand still: no delta.
        if !failed.isEmpty {
            for (key, stat) in values where failed.contains(key.source ?? "") {
                values[key] = EventStat(value: stat.value, previous: stat.value)
            }
        }
        let interval = lastRead.map { now - $0 } ?? 0
        lastRead = now
        return Sample(time: time, interval: interval, values: values, histograms: histograms,
                      guestNames: guestNames, guestValues: guestValues, families: families)
    }

    public func reset() throws(SourceError) {
        values.removeAll()
        for source in sources { try source.reset() }
    }

    /// Whether the guest view is possible: one source, able to key counts by guest (two
    /// sources' rows for one guest could not be told apart or added up).
    public var supportsByGuest: Bool { sources.count == 1 && sources[0].supportsByGuest }

    /// Every field the sources can report, whatever the filter.
    public func availableFields() -> [String] {
        sources.flatMap { $0.availableFields() }
    }

    /// Warnings the sources gave since the last call (each said once, on stderr).
    public func takeWarnings() -> [String] {
        defer { warnings.removeAll() }
        return warnings
    }

    public func close() {
        for source in sources { source.close() }
    }
}
