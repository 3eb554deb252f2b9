import KVMCore

/// Merges the chosen sources into one table of `(value, delta)` per event, and carries the
/// filters the screen and command line change (upstream's Stats).
public final class Stats {
    public let sources: [any StatSource]
    public private(set) var fieldsFilter: FieldFilter?
    public private(set) var pidFilter: Int
    /// Whether child events (`kvm_exit(HLT)`) are shown; counting does not depend on it.
    public var childEvents = false
    public private(set) var values: [EventID: EventStat] = [:]

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

    /// Reads every source and returns the updated table.
    @discardableResult
    public func get(byGuest: Bool = false) throws(SourceError) -> [EventID: EventStat] {
        var returned = Set<EventID>()
        for source in sources {
            for (key, newValue) in try source.read(byGuest: byGuest) {
                values[key] = EventStat(value: newValue, previous: values[key]?.value ?? 0)
                if byGuest { returned.insert(key) }
            }
        }
        // A guest no source reports any more (it quit; its counts went to another row) has no
        // row, rather than a stale one.
        if byGuest { values = values.filter { !$0.key.isGuestTotal || returned.contains($0.key) } }
        return values
    }

    public func reset() throws(SourceError) {
        values.removeAll()
        for source in sources { try source.reset() }
    }

    /// Whether the guest view is possible: one source, able to key counts by guest (two
    /// sources' rows for one guest could not be told apart or added up).
    public var supportsByGuest: Bool { sources.count == 1 && sources[0].supportsByGuest }

    /// Switches between keys by event and keys by guest pid; false (refused) when a source
    /// cannot key by guest.
    public func setDisplayGuests(_ byGuest: Bool) throws(SourceError) -> Bool {
        guard supportsByGuest else { return false }
        values = values.filter { key, _ in
            byGuest ? key.isChild : !key.isGuestTotal
        }
        try get(byGuest: byGuest)
        return true
    }

    /// Every field the sources can report, whatever the filter.
    public func availableFields() -> [String] {
        sources.flatMap { $0.availableFields() }
    }

    /// Per-guest values of every event from now on (`guestEvents`).
    public func enableGuestEvents() throws(SourceError) {
        for source in sources { try source.setGuestEvents(true) }
    }

    /// The last read's per-guest values, every source's.
    public func guestEvents() -> [EventID: UInt64] {
        sources.reduce(into: [:]) { all, source in all.merge(source.guestEvents()) { first, _ in first } }
    }

    /// The fields that are levels, not counts (every source's).
    public func levelFields() -> Set<String> {
        sources.reduce(into: []) { $0.formUnion($1.levelFields()) }
    }

    /// The sources' histograms as last read.
    public func histograms() -> [EventID: Histogram] {
        sources.reduce(into: [:]) { all, source in all.merge(source.histograms()) { first, _ in first } }
    }

    public func takeWarnings() -> [String] {
        sources.flatMap { $0.takeWarnings() }
    }

    public func close() {
        for source in sources { source.close() }
    }
}
