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
    public var supportsByGuest: Bool { false }

    private let architecture: any Architecture
    private let paths: SystemPaths
    private let eventsDirectory: String
    /// Tracepoints that get one child per named value: tracepoint → (field, values).
    private let childFilters: [String: (field: String, reasons: [ExitReason])]
    private let fields: [String]
    /// Per field: the key it reports under (`child parent` for a child), and whether wanted.
    private let keys: [String]
    private var wanted: [Int] = []
    private var wantedMask: [Bool]
    private let totals: UnsafeMutableBufferPointer<Int>
    private var pid: Int
    private var groups: [PerfGroup] = []
    private var watchedThreads: Set<Int> = []
    private var tracepointIDs: [String: UInt64] = [:]
    private var openDescriptors = 0
    private var handoffs: [Int32] = []
    private var warnings: [String] = []

    public init(configuration: SourceConfiguration) throws(SourceError) {
        architecture = configuration.architecture
        paths = configuration.paths
        eventsDirectory = configuration.paths.kvmEvents
        var filters: [String: (String, [ExitReason])] = [
            "kvm_userspace_exit": ("reason", UserspaceExitReasons.table),
        ]
        if let field = architecture.exitReasonField, architecture.hasExitReasonChildren {
            filters["kvm_exit"] = (field, architecture.exitReasons)
        }
        childFilters = filters
        let entries: [FileSystem.DirectoryEntry]
        do { entries = try FileSystem.listDirectory(eventsDirectory) } catch {
            throw SourceError("cannot list tracepoints in \(eventsDirectory): \(error)")
        }
        var all = entries.filter(\.isDirectory).map(\.name)
        var children: [String] = []
        for tracepoint in all {
            guard let (_, reasons) = filters[tracepoint] else { continue }
            children += reasons.map { "\(tracepoint)(\($0.name))" }
        }
        all += children
        fields = all
        let architecture = configuration.architecture
        keys = all.map { name in architecture.tracepointParent(of: name).map { name + " " + $0 } ?? name }
        totals = .allocate(capacity: all.count)
        pid = configuration.pid
        wantedMask = Array(repeating: false, count: all.count)
        setWanted(Self.select(fields, configuration.fieldFilter, architecture))
        try rebuildGroups()
    }

    deinit {
        close()
        totals.deallocate()
    }

    private func setWanted(_ names: [String]) {
        let index = Dictionary(uniqueKeysWithValues: fields.enumerated().map { ($1, $0) })
        wanted = names.compactMap { index[$0] }
        wantedMask = Array(repeating: false, count: fields.count)
        for i in wanted { wantedMask[i] = true }
    }

    public func availableFields() -> [String] { fields }

    /// The filter's fields plus the parents of wanted children (a child alone shows nothing).
    static func select(_ fields: [String], _ filter: FieldFilter?,
                       _ architecture: any Architecture) -> [String] {
        var chosen = fields.filter { filter.wants($0) }
        var present = Set(chosen)
        for field in chosen {
            if let parent = architecture.tracepointParent(of: field), !present.contains(parent) {
                chosen.append(parent)
                present.insert(parent)
            }
        }
        return chosen
    }

    public func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        setWanted(Self.select(fields, filter, architecture))
        for group in groups {
            try fill(group)
            for field in group.slots {
                group.set(field, wanted: wantedMask[field], ioctls: architecture.perfIoctls)
            }
        }
    }

    public func setPid(_ pid: Int) throws(SourceError) {
        self.pid = pid
        try rebuildGroups()
    }

    public func read(byGuest: Bool) throws(SourceError) -> [String: Int] {
        if pid > 0 { try watchNewThreads() }
        reapHandoffs()
        totals.update(repeating: 0)
        for group in groups {
            do throws(Errno) { try group.accumulate(into: totals) } catch {
                throw SourceError("reading perf events: \(error)")
            }
        }
        var counts: [String: Int] = [:]
        counts.reserveCapacity(wanted.count)
        for field in wanted { counts[keys[field]] = totals[field] }
        return counts
    }

    public func reset() throws(SourceError) {
        for group in groups { group.resetAll(ioctls: architecture.perfIoctls) }
    }

    public func takeWarnings() -> [String] {
        defer { warnings.removeAll() }
        return warnings
    }

    public func close() {
        releaseGroups()
    }

    private func releaseGroups() {
        let descriptors = groups.flatMap(\.descriptors)
        groups.removeAll()
        watchedThreads.removeAll()
        openDescriptors = 0
        if let child = DescriptorHandoff.release(descriptors) { handoffs.append(child) }
    }

    private func reapHandoffs() {
        handoffs.removeAll { DescriptorHandoff.reap($0) }
    }

    private func rebuildGroups() throws(SourceError) {
        releaseGroups()
        if pid > 0 {
            try watchNewThreads()
        } else {
            for cpu in try onlineCPUs() { try addGroup(pid: -1, cpu: Int32(cpu)) }
        }
    }

    /// Starts a group for every thread of the watched process not yet counted.
    private func watchNewThreads() throws(SourceError) {
        guard let tids = try? FileSystem.numericEntries("\(paths.proc)/\(pid)/task") else { return }
        for tid in tids {
            guard !watchedThreads.contains(tid) else { continue }
            watchedThreads.insert(tid)
            try addGroup(pid: Int32(tid), cpu: -1)
        }
    }

    private func addGroup(pid: Int32, cpu: Int32) throws(SourceError) {
        // A thread's group gets its task-clock, so the group is read only when it ran.
        let activity = pid > 0
            ? try? PerfEvent.openTaskClock(pid: pid, syscallNumber: architecture.perfEventOpenSyscall)
            : nil
        if activity != nil { openDescriptors += 1 }
        let group = PerfGroup(pid: pid, cpu: cpu, activity: activity)
        try fill(group)
        if group.leader != nil { groups.append(group) } else { activity?.close() }
    }

    /// Opens the wanted fields the group lacks.
    private func fill(_ group: PerfGroup) throws(SourceError) {
        let missing = wanted.filter { !group.contains($0) }
        guard !missing.isEmpty else { return }
        try raiseDescriptorLimit(adding: missing.count)
        for field in missing {
            let name = fields[field]
            let tracepoint = architecture.tracepointParent(of: name) ?? name
            guard let id = tracepointID(tracepoint) else { continue }
            var filter: String?
            if tracepoint != name, let (field, reasons) = childFilters[tracepoint] {
                let reasonName = String(name.dropFirst(tracepoint.count + 1).dropLast())
                guard let reason = reasons.first(where: { $0.name == reasonName }) else { continue }
                filter = "\(field)==\(reason.value)"
            }
            do throws(Errno) {
                try group.add(field: field, tracepointID: id, filter: filter,
                              architecture: architecture)
                openDescriptors += 1
            } catch {
                if error == .noSuchProcess || error == .noSuchFile { return }  // thread gone
                throw openError(error)
            }
        }
    }

    private func openError(_ error: Errno) -> SourceError {
        switch error {
        case .permissionDenied, .notPermitted:
            return SourceError("perf_event_open: \(error): kvmstat needs CAP_SYS_ADMIN (root) or "
                + "/proc/sys/kernel/perf_event_paranoid < 1 to count tracepoints")
        case .tooManyOpenFiles, Errno(rawValue: 23):  // EMFILE, ENFILE
            return SourceError("perf_event_open: \(error): \(openDescriptors + 50) open files "
                + "needed; raise the limit (ulimit -n) or use a narrower -f filter")
        default:
            return SourceError("perf_event_open: \(error)")
        }
    }

    private func raiseDescriptorLimit(adding count: Int) throws(SourceError) {
        // Headroom for the standard streams, debugfs reads and log files, as upstream keeps.
        let needed = openDescriptors + count + 50
        guard ResourceLimits.openFilesSoftLimit() < needed else { return }
        do throws(Errno) { try ResourceLimits.ensureOpenFiles(needed) } catch {
            throw SourceError("NOFILE rlimit could not be raised to \(needed) (\(error)); "
                + "run as root or raise the hard limit (ulimit -Hn)")
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

    private func onlineCPUs() throws(SourceError) -> [Int] {
        let path = paths.sys + "/devices/system/cpu/online"
        guard let text = try? FileSystem.readText(path), let cpus = Self.parseCPUList(text) else {
            throw SourceError("cannot read the online CPUs from \(path)")
        }
        return cpus
    }

    /// `0-3,8,10-11` → [0, 1, 2, 3, 8, 10, 11].
    public static func parseCPUList(_ text: String) -> [Int]? {
        var cpus: [Int] = []
        for member in text.trimmingBlanks().split(separator: ",") {
            let bounds = member.split(separator: "-", omittingEmptySubsequences: false)
            guard let first = Int(bounds[0]) else { return nil }
            if bounds.count == 1 {
                cpus.append(first)
            } else if bounds.count == 2, let last = Int(bounds[1]), last >= first {
                cpus.append(contentsOf: first...last)
            } else {
                return nil
            }
        }
        return cpus.isEmpty ? nil : cpus
    }
}
