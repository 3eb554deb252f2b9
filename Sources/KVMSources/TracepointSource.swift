import Dispatch
import KVMCore

/// Counts KVM tracepoints through perf, as upstream's TracepointProvider: one group per online
/// CPU, or with a pid one group per thread of that process; exit reasons become child events
/// (`kvm_exit(HLT)`) through tracepoint filters.
///
/// Better than upstream: it opens only the fields the filter wants (adding more when the
/// filter widens), picks up threads that appear in the watched process, and hands its
/// descriptors to a detached child at the end so quitting does not wait on the kernel.
public final class TracepointSource: StatSource {
    public let name = "tracepoint"
    public var supportsByGuest: Bool { Self.description.byGuest }

    public static let description = SourceDescription(
        name: "tracepoint", summary: "KVM tracepoints through perf (default)",
        enabledPhrase: "tracepoints", byGuest: true, reads: [.pid, .fields], defaultRank: 0,
        shorthand: "-t",
        unavailableReason: unavailableReason(_:),
        fields: { (configuration) throws(SourceError) in try fieldNames(configuration) },
        make: { (configuration) throws(SourceError) in try TracepointSource(configuration: configuration) })

    let architecture: any Architecture
    let paths: SystemPaths
    private let eventsDirectory: String
    /// Tracepoints that get one child per named value: tracepoint → (field, values).
    private let childFilters: [String: (field: String, reasons: [ExitReason])]
    private let fields: [String]
    /// Per field: the key it reports under (`child/parent` for a child), and whether wanted.
    let keys: [EventID]
    var wanted: [Int] = []
    private var wantedMask: [Bool]
    let totals: UnsafeMutableBufferPointer<UInt64>
    /// What the groups of threads that have exited counted, per field: their groups are
    /// closed, their counts stay in the totals.
    private let retired: UnsafeMutableBufferPointer<UInt64>
    var pid: Int
    var groups: [PerfGroup] = []
    /// Threads of the watched process that have a group open, and those still listed that
    /// the kernel refused as gone (an exited main thread stays listed while others run).
    private var watchedThreads: Set<Int> = []
    private var vanishedThreads: Set<Int> = []
    private var tracepointIDs: [String: UInt64] = [:]
    private var plans: [Int: EventPlan] = [:]
    /// Child reason values by tracepoint and reason name.
    private let childValues: [String: [String: Int]]
    private(set) var openDescriptors = 0
    private var handoffs: [Int32] = []
    var warnings: [String] = []
    /// The by-guest view's groups, while it is shown or per-guest events are asked for.
    var guestState = TracepointGuests()
    private var guestNames: GuestNames
    /// Every tracepoint is a family of its own; its children (exit reasons) belong to it.
    private let families: [String: MetricFamily]
    /// The watched process's cgroup while its events are counted through it.
    var watchedCGroup: CGroup?
    /// How counting was set up, for `--verbose`.
    var notes: [String] = []

    public init(configuration: SourceConfiguration) throws(SourceError) {
        architecture = configuration.architecture
        if !configuration.architectureIsHosts, let reason = Self.unavailableReason(configuration) {
            throw SourceError(String(reason.dropFirst("kvmstat: ".count)))
        }
        paths = configuration.paths
        eventsDirectory = configuration.paths.kvmEvents
        let filters = Self.childFilters(architecture)
        childFilters = filters
        childValues = filters.mapValues { spec in
            Dictionary(spec.reasons.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        }
        fields = try Self.fieldNames(configuration)
        let architecture = configuration.architecture
        keys = fields.map { EventID($0, parent: architecture.tracepointParent(of: $0)) }
        families = Dictionary(keys.filter { $0.parent == nil }.map {
            ($0.name, MetricFamily($0.name, kind: .counter, help: "KVM tracepoint \($0.name)", origin: .tracepoint))
        }, uniquingKeysWith: { first, _ in first })
        guestNames = GuestNames(proc: configuration.paths.proc)
        totals = .allocate(capacity: fields.count)
        retired = .allocate(capacity: fields.count)
        retired.initialize(repeating: 0)
        pid = configuration.pid
        wantedMask = Array(repeating: false, count: fields.count)
        setWanted(configuration.fieldFilter)
        try rebuildGroups()
    }

    deinit {
        close()
        totals.deallocate()
        retired.deallocate()
    }

    private func setWanted(_ filter: FieldFilter?) {
        wanted = filter.select(fields, parentOf: architecture.tracepointParent(of:))
        wantedMask = Array(repeating: false, count: fields.count)
        for i in wanted { wantedMask[i] = true }
    }

    public func availableFields() -> [String] { fields }

    /// Counting starts again from zero (as upstream's does on every filter change), each
    /// group stopped while it changes so that parents and children start together.
    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        setWanted(filter)
        // The guests' groups are opened again, with the new fields, when next asked for.
        releaseGuestGroups()
        // A filter that wanted nothing opened no CPU groups: open them now. Groups counting
        // a cgroup are opened anew too (their cgroup's descriptor was closed once they had it).
        if pid == 0 && groups.isEmpty || watchedCGroup != nil { return try rebuildGroups() }
        retired.update(repeating: 0)
        let ioctls = architecture.perfIoctls
        for group in groups {
            group.stop(ioctls: ioctls)
            try fill(group)
            for field in group.slots { group.set(field, wanted: wantedMask[field], ioctls: ioctls) }
            group.restart(ioctls: ioctls)
        }
    }

    public func setPid(_ pid: Int) throws(SourceError) {
        self.pid = pid
        try rebuildGroups()
    }

    public func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        let byGuest = request.byGuest
        if pid > 0 { try followWatchedProcess() }
        reapHandoffs()
        // The guests' groups are read before the system-wide ones: counters only grow, so the
        // total then holds every event a guest's row does, and the rest's row (the total less
        // the guests') never comes out short by what a busy guest did in between.
        let guestSums = byGuest && pid == 0 ? try readGuestSums() : [:]
        _ = totals.update(fromContentsOf: retired)
        for group in groups {
            do throws(Errno) { try group.accumulate(into: totals) } catch {
                throw SourceError("reading perf events", errno: error)
            }
        }
        var reading = Reading(families: families, warnings: warnings)
        warnings.removeAll()
        if byGuest {
            reading.values = guestRows(guestSums)
        } else {
            if request.perGuest {
                reading.guestValues = try collectGuestEvents()
            } else if guestState.active {
                releaseGuestGroups()
            }
            reading.values.reserveCapacity(wanted.count)
            for field in wanted { reading.values[keys[field]] = totals[field] }
        }
        if byGuest || request.perGuest {
            reading.guestNames = guestNames.names(of: Array(reading.values.keys.compactMap(\.guest))
                + reading.guestValues.keys.compactMap(\.guest))
        }
        return reading
    }

    func resetRetired() { retired.update(repeating: 0) }

    public func setupNotes() -> [String] { notes }

    public func reset() throws(SourceError) {
        resetGuestGroups()
        retired.update(repeating: 0)
        for group in groups { group.resetAll(ioctls: architecture.perfIoctls) }
    }

    /// Descriptors the groups hold now (tests check they stay flat over thread churn).
    var descriptorCount: Int { groups.reduce(0) { $0 + $1.descriptors.count } }

    public func close() {
        releaseGroups()
    }

    private func releaseGroups() {
        // The guests' groups go with the rest to the handoff child (closing is slow).
        let guestDescriptors = guestState.guests.values.flatMap { $0.groups.flatMap(\.descriptors) }
        guestState.guests.removeAll()
        releaseGuestGroups()
        let descriptors = groups.flatMap(\.descriptors) + guestDescriptors
        groups.removeAll()
        watchedThreads.removeAll()
        vanishedThreads.removeAll()
        retired.update(repeating: 0)
        openDescriptors = 0
        if let child = DescriptorHandoff.release(descriptors) { handoffs.append(child) }
    }

    private func reapHandoffs() {
        handoffs.removeAll { DescriptorHandoff.reap($0) }
    }

    func rebuildGroups() throws(SourceError) {
        releaseGroups()
        watchedCGroup = nil
        if pid > 0 {
            if try countThroughCGroup() { return }
            try followThreads()
        } else {
            try addGroups(try onlineCPUs().map { (pid: Int32(-1), cpu: Int32($0)) })
        }
    }

    /// Keeps one group per live thread of the watched process: retires the groups of threads
    /// that have exited and starts one for every thread not yet counted.
    func followThreads() throws(SourceError) {
        guard let tids = try? FileSystem.numericEntries("\(paths.proc)/\(pid)/task") else { return }
        let live = Set(tids)
        if watchedThreads.count > live.count || !watchedThreads.isSubset(of: live) {
            retireGroups { !live.contains(Int($0.pid)) }
        }
        vanishedThreads.formIntersection(live)
        let fresh = tids.filter { !watchedThreads.contains($0) && !vanishedThreads.contains($0) }
        guard !fresh.isEmpty else { return }
        try addGroups(fresh.map { (pid: Int32($0), cpu: Int32(-1)) })
    }

    /// Closes the groups of threads that have exited, keeping what they counted. QEMU starts
    /// and ends worker threads all the time; their groups would otherwise pile up until the
    /// descriptor limit ends kvmstat. A thread leaves /proc only after the kernel has
    /// finished its perf events (perf_event_exit_task comes before the thread is released),
    /// so the last read of a gone thread's group is final.
    func retireGroups(where gone: (PerfGroup) -> Bool) {
        var kept: [PerfGroup] = []
        var released: [FileDescriptor] = []
        for group in groups {
            guard gone(group) else {
                kept.append(group)
                continue
            }
            try? group.accumulate(into: retired)
            if let thread = group.thread { watchedThreads.remove(thread) }
            released += group.descriptors
        }
        groups = kept
        openDescriptors -= released.count
        for fd in released { fd.close() }
    }

    /// How to open one field's counter: its tracepoint and, for a child, its filter.
    struct EventPlan: Sendable {
        let field: Int
        let tracepointID: UInt64
        let filter: String?
    }

    private func plan(for field: Int) -> EventPlan? {
        if let known = plans[field] { return known }
        let name = fields[field]
        let tracepoint = architecture.tracepointParent(of: name) ?? name
        guard let id = tracepointID(tracepoint) else { return nil }
        var filter: String?
        if tracepoint != name, let (reasonField, _) = childFilters[tracepoint] {
            let reasonName = String(name.dropFirst(tracepoint.count + 1).dropLast())
            guard let value = childValues[tracepoint]?[reasonName] else { return nil }
            filter = "\(reasonField)==\(value)"
        }
        let plan = EventPlan(field: field, tracepointID: id, filter: filter)
        plans[field] = plan
        return plan
    }

    /// Opens one group per target. The kernel takes tens of microseconds per tracepoint
    /// event, so groups are opened on several threads at once (each group on one thread).
    func addGroups(_ targets: [(pid: Int32, cpu: Int32)], cgroup: Bool = false) throws(SourceError) {
        let (opened, vanished, failure) = try openGroups(targets, cgroup: cgroup)
        for group in opened {
            groups.append(group)
            if let thread = group.thread { watchedThreads.insert(thread) }
        }
        vanishedThreads.formUnion(vanished)
        if let failure { throw openError(failure) }
    }

    /// Opens one group per target (counted in `openDescriptors`); returns the groups, the
    /// threads that were gone, and the first failure. The kernel takes tens of microseconds
    /// per tracepoint event, so groups are opened on several threads at once.
    func openGroups(_ targets: [(pid: Int32, cpu: Int32)], cgroup: Bool)
        throws(SourceError) -> (opened: [PerfGroup], vanished: [Int], failure: Errno?)
    {
        let eventPlans = wanted.compactMap { plan(for: $0) }
        guard !eventPlans.isEmpty else { return ([], [], nil) }
        try raiseDescriptorLimit(adding: targets.count * (eventPlans.count + 1))
        let architecture = self.architecture
        let proc = paths.proc
        let slots = targets.map { _ in GroupSlot() }
        let workers = min(targets.count, 4, ResourceLimits.onlineProcessors())
        let open = { @Sendable (worker: Int) in
            var i = worker
            while i < targets.count {
                slots[i].result = Self.openGroup(pid: targets[i].pid, cpu: targets[i].cpu, cgroup: cgroup,
                                                 plans: eventPlans, architecture: architecture,
                                                 proc: proc)
                i += workers
            }
        }
        if workers == 1 { open(0) } else if workers > 1 {
            DispatchQueue.concurrentPerform(iterations: workers, execute: open)
        }
        var opened: [PerfGroup] = []
        var vanished: [Int] = []
        var failure: Errno?
        for (slot, target) in zip(slots, targets) {
            switch slot.result {
            case .success(let group?):
                opened.append(group)
                openDescriptors += group.descriptors.count
            case .success(nil):
                if target.pid > 0 && !cgroup { vanished.append(Int(target.pid)) }
            case .failure(let error): failure = failure ?? error
            }
        }
        return (opened, vanished, failure)
    }

    /// Closes groups that are not in `groups` (a guest's), keeping the count of descriptors.
    func closeGroups(_ list: [PerfGroup]) {
        let descriptors = list.flatMap(\.descriptors)
        openDescriptors -= descriptors.count
        for fd in descriptors { fd.close() }
    }

    /// Opens a group of `plans` for one CPU or thread, complete before it starts counting;
    /// nil when the thread is gone.
    private static func openGroup(
        pid: Int32, cpu: Int32, cgroup: Bool, plans: [EventPlan], architecture: any Architecture, proc: String
    ) -> Result<PerfGroup?, Errno> {
        // A thread's group gets its task-clock, so the group is read only when it ran.
        let activity = pid > 0 && !cgroup
            ? try? PerfEvent.openTaskClock(pid: pid, syscallNumber: architecture.perfEventOpenSyscall)
            : nil
        let group = PerfGroup(pid: pid, cpu: cpu, activity: activity, cgroup: cgroup)
        do throws(Errno) {
            try add(plans, to: group, architecture: architecture)
            try group.start(ioctls: architecture.perfIoctls)
        } catch {
            for fd in group.descriptors { fd.close() }
            return !cgroup && threadGone(pid, error, proc: proc) ? .success(nil) : .failure(error)
        }
        return .success(group.leader == nil ? nil : group)
    }

    /// Whether opening a thread's events failed because the thread exited meanwhile: the
    /// kernel says ESRCH or ENOENT before it exits, ENODEV while it is exiting, and whatever
    /// it says, a thread that no longer exists is gone, not an error.
    private static func threadGone(_ tid: Int32, _ error: Errno, proc: String) -> Bool {
        guard tid > 0 else { return false }
        return error == .noSuchProcess || error == .noSuchFile || error == .noSuchDevice
            || !FileSystem.exists("\(proc)/\(tid)")
    }

    private static func add(
        _ plans: [EventPlan], to group: PerfGroup, architecture: any Architecture
    ) throws(Errno) {
        for plan in plans {
            try group.add(field: plan.field, tracepointID: plan.tracepointID,
                          filter: plan.filter, architecture: architecture)
        }
    }

    /// Opens the wanted fields a stopped group lacks (when a filter widens). A thread that
    /// exited meanwhile keeps its group as it is until it is retired.
    private func fill(_ group: PerfGroup) throws(SourceError) {
        let missing = wanted.filter { !group.contains($0) }.compactMap { plan(for: $0) }
        guard !missing.isEmpty else { return }
        try raiseDescriptorLimit(adding: missing.count)
        let before = group.members.count
        defer { openDescriptors += group.members.count - before }
        do throws(Errno) { try Self.add(missing, to: group, architecture: architecture) } catch {
            if let thread = group.thread, Self.threadGone(Int32(thread), error, proc: paths.proc) { return }
            throw openError(error)
        }
    }

    private func tracepointID(_ tracepoint: String) -> UInt64? {
        if let id = tracepointIDs[tracepoint] { return id }
        guard let text = try? FileSystem.readText("\(eventsDirectory)/\(tracepoint)/id"),
              let id = UInt64(text.trimmingBlanks())
        else { return nil }
        tracepointIDs[tracepoint] = id
        return id
    }

}

/// One group's outcome from a worker thread; each slot is written by one worker only and read
/// after all have finished.
private final class GroupSlot: @unchecked Sendable {
    var result: Result<PerfGroup?, Errno> = .success(nil)
}
