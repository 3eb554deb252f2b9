import KVMCore

/// Counts KVM tracepoints through perf, as upstream's TracepointProvider: one group per online
/// CPU, or with a pid through the process's cgroup or one group per thread; exit reasons
/// become child events (`kvm_exit(HLT)`) through tracepoint filters.
///
/// Better than upstream: it opens only the fields the filter wants (adding more when the
/// filter widens), picks up threads that appear in the watched process, counts guests through
/// their cgroups, and hands its descriptors to a detached child at the end so quitting does not
/// wait on the kernel.
///
/// It is put together from parts that each own their state: the `TracepointCatalog` (what
/// can be counted and how to open it), the `GroupOpener` (opening, closing, descriptor
/// limits), the `CountingGroups` its totals come from, and the `GuestGroups` of the by-guest
/// view.
public final class TracepointSource: StatSource {
    public let name = "tracepoint"
    public var supportsByGuest: Bool { Self.description.byGuest }

    public static let description = SourceDescription(
        name: "tracepoint", summary: "KVM tracepoints through perf (default)",
        enabledPhrase: "tracepoints", byGuest: true, reads: [.pid, .fields], defaultRank: 0,
        shorthand: "-t",
        unavailableReason: TracepointCatalog.unavailableReason(_:),
        fields: { (configuration) throws(SourceError) in try TracepointCatalog.fieldNames(configuration) },
        make: { (configuration) throws(SourceError) in try TracepointSource(configuration: configuration) })

    private let catalog: TracepointCatalog
    private let opener: GroupOpener
    private let counting: CountingGroups
    private let guests: GuestGroups
    private var exitNotice = SilentExitNotice()
    private var pid: Int
    private var wanted: [Int] = []
    private var wantedMask: [Bool] = []
    private let totals: UnsafeMutableBufferPointer<UInt64>
    private var handoffs: [Int32] = []
    private var guestNames: GuestNames

    public init(configuration: SourceConfiguration) throws(SourceError) {
        if !configuration.architectureIsHosts, let reason = TracepointCatalog.unavailableReason(configuration) {
            throw SourceError(String(reason.dropFirst("kvmstat: ".count)))
        }
        catalog = try TracepointCatalog(configuration: configuration)
        opener = GroupOpener(architecture: configuration.architecture, proc: configuration.paths.proc)
        counting = CountingGroups(catalog: catalog, opener: opener, paths: configuration.paths)
        guests = GuestGroups(catalog: catalog, opener: opener, paths: configuration.paths)
        totals = .allocate(capacity: catalog.fields.count)
        pid = configuration.pid
        guestNames = GuestNames(proc: configuration.paths.proc)
        setWanted(configuration.fieldFilter)
        try rebuildGroups()
    }

    deinit {
        close()
        totals.deallocate()
    }

    private func setWanted(_ filter: FieldFilter?) {
        wanted = catalog.select(filter)
        wantedMask = Array(repeating: false, count: catalog.fields.count)
        for i in wanted { wantedMask[i] = true }
    }

    public func availableFields() -> [String] { catalog.fields }

    /// Counting starts again from zero (as upstream's does on every filter change), each
    /// group stopped while it changes so that parents and children start together.
    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        setWanted(filter)
        // The guests' groups are opened again, with the new fields, when next asked for.
        guests.close()
        if counting.needsReopening { return try rebuildGroups() }
        try counting.change(wanted: wanted, mask: wantedMask)
    }

    public func setPid(_ pid: Int) throws(SourceError) {
        self.pid = pid
        try rebuildGroups()
    }

    public func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        try counting.follow(wanted: wanted)
        reapHandoffs()
        // The guests' groups are read before the system-wide ones: counters only grow, so the
        // total then holds every event a guest's row does, and the rest's row (the total less
        // the guests') never comes out short by what a busy guest did in between.
        let guestSums = request.byGuest && pid == 0 ? try guests.rowSums(wanted: wanted) : [:]
        totals.update(repeating: 0)
        try counting.accumulate(into: totals)
        // Guests that share a cgroup are said where their row shows (by guest), not where
        // the formats merely lack their labels.
        let sharing = guests.takeWarnings()
        var reading = Reading(families: catalog.families, warnings: counting.takeWarnings() + (request.byGuest ? sharing : []))
        if request.byGuest {
            reading.values = pid > 0 ? [.guestTotal(pid): guests.rowSum(totals, wanted: wanted)]
                : guests.rows(guestSums, totals: totals, wanted: wanted)
        } else {
            if request.perGuest {
                reading.guestValues = try guestValues()
            } else if guests.active {
                guests.close()
            }
            reading.values.reserveCapacity(wanted.count)
            for field in wanted { reading.values[catalog.keys[field]] = totals[field] }
            exitNotice.look(at: reading.values, into: &reading.warnings)
        }
        if request.byGuest || request.perGuest { guestNames.name(&reading) }
        return reading
    }

    /// Every wanted event per guest: the watched guest's totals with `-p`, else each guest's
    /// cgroup groups.
    private func guestValues() throws(SourceError) -> GuestValues {
        guard pid > 0 else { return try guests.values(wanted: wanted) }
        var results = GuestValues()
        for field in wanted { results[catalog.keys[field].of(guest: pid)] = totals[field] }
        return results
    }

    public func setupNotes() -> [String] { counting.notes }

    public func reset() throws(SourceError) {
        guests.reset()
        counting.reset()
    }

    /// Descriptors the groups hold now (tests check they stay flat over thread churn).
    var descriptorCount: Int { counting.descriptorCount }

    public func close() {
        releaseGroups()
    }

    /// Every group (the guests' too) goes to the hand-off child: closing is slow.
    private func releaseGroups() {
        let descriptors = guests.release() + counting.release()
        if let child = DescriptorHandoff.release(descriptors) { handoffs.append(child) }
    }

    private func reapHandoffs() {
        handoffs.removeAll { DescriptorHandoff.reap($0) }
    }

    private func rebuildGroups() throws(SourceError) {
        releaseGroups()
        try counting.open(pid: pid, wanted: wanted)
    }
}
