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
        var guestValues: [EventID: UInt64] = [:]
        var histograms: [EventID: Histogram] = [:]
        var guestNames: [Int: String] = [:]
        var readings: [(origin: String, reading: Reading)] = []
        var reported = 0
        for source in sources {
            let reading = try source.read(request)
            let origin = source.name
            readings.append((origin, reading))
            families[origin] = reading.families
            for (key, newValue) in reading.values {
                let qualified = key.from(origin)
                values[qualified] = EventStat(value: newValue, previous: values[qualified]?.value ?? 0)
            }
            reported += reading.values.count
            for (key, value) in reading.guestValues { guestValues[key.from(origin)] = value }
            for (key, histogram) in reading.histograms { histograms[key.from(origin)] = histogram }
            if !reading.guestNames.isEmpty { guestNames.merge(reading.guestNames) { first, _ in first } }
            if !reading.warnings.isEmpty { warnings += reading.warnings }
        }
        // Rows no source reports any more (a guest that quit, whose counts went to another
        // row; events of the other view) are left out rather than shown stale. In the steady
        // state every row is reported again and the table is updated in place.
        if values.count != reported {
            let current = Set(readings.flatMap { item in item.reading.values.keys.map { $0.from(item.origin) } })
            values = values.filter { current.contains($0.key) }
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
