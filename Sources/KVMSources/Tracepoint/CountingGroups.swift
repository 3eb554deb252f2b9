import KVMCore

/// The tracepoint source's own groups — what its totals are read from: one group per online
/// CPU system-wide; with `-p`/`-g`, one per CPU through the watched process's cgroup, or one
/// per thread of it. Groups of threads that exit are read one last time and closed, their
/// counts kept (`retired`).
///
/// Through the cgroup: when the process is alone in its cgroup v2 group (as libvirt and
/// systemd place guests), one group per CPU counts every task of the cgroup
/// (PERF_FLAG_PID_CGROUP) instead of one group per thread. That is exact from the first event
/// of a thread started later, with no rescan, and needs CPUs × fields events instead of
/// threads × fields; so it is chosen when the CPUs are no more than the threads. Elsewhere
/// (other processes in the cgroup, no cgroup v2, a kernel that refuses) kvmstat counts per
/// thread; `--verbose` says which and why.
final class CountingGroups {
    private let catalog: TracepointCatalog
    private let opener: GroupOpener
    private let paths: SystemPaths
    private(set) var pid = 0
    private(set) var groups: [PerfGroup] = []
    /// Threads of the watched process that have a group open, and those still listed that
    /// the kernel refused as gone (an exited main thread stays listed while others run).
    private var watchedThreads: Set<Int> = []
    private var vanishedThreads: Set<Int> = []
    /// The watched process's cgroup while its events are counted through it.
    private(set) var watchedCGroup: CGroup?
    /// What the groups of threads that have exited counted, by field.
    private var retired = Departed<Int>()
    /// How counting was set up (`--verbose`), and what the operator should be told.
    private(set) var notes: [String] = []
    private var warnings: [String] = []

    init(catalog: TracepointCatalog, opener: GroupOpener, paths: SystemPaths) {
        self.catalog = catalog
        self.opener = opener
        self.paths = paths
    }

    func takeWarnings() -> [String] {
        defer { warnings.removeAll() }
        return warnings
    }

    /// Descriptors the groups hold now (tests check they stay flat over thread churn).
    var descriptorCount: Int { groups.reduce(0) { $0 + $1.descriptors.count } }

    /// Opens the groups for `pid` (0: every CPU) and the fields `wanted`, after `release`.
    func open(pid: Int, wanted: [Int]) throws(SourceError) {
        self.pid = pid
        if pid > 0 {
            if try countThroughCGroup(wanted: wanted) { return }
            try followThreads(wanted: wanted)
        } else {
            try add(try TracepointCatalog.onlineCPUs(paths).map { (pid: Int32(-1), cpu: Int32($0)) }, wanted: wanted)
        }
    }

    /// Hands every group's descriptors over (for the hand-off child) and forgets them and
    /// what retired groups counted.
    func release() -> [FileDescriptor] {
        let descriptors = opener.release(groups)
        groups.removeAll()
        watchedThreads.removeAll()
        vanishedThreads.removeAll()
        watchedCGroup = nil
        retired.removeAll()
        return descriptors
    }

    /// Whether a filter change must open the groups anew rather than change them: none are
    /// open (a filter that wanted nothing opened none), or they count a cgroup (whose
    /// descriptor was closed once they had it).
    var needsReopening: Bool { pid == 0 && groups.isEmpty || watchedCGroup != nil }

    /// Counts `wanted` from zero (as upstream does on every filter change): each group is
    /// stopped while it changes, so that parents and children start together.
    func change(wanted: [Int], mask: [Bool]) throws(SourceError) {
        retired.removeAll()
        let ioctls = catalog.architecture.perfIoctls
        for group in groups {
            group.stop(ioctls: ioctls)
            try opener.fill(group, with: wanted.filter { !group.contains($0) }.compactMap(catalog.plan(for:)))
            for field in group.slots { group.set(field, wanted: mask[field], ioctls: ioctls) }
            group.restart(ioctls: ioctls)
        }
    }

    /// Zeroes every group at one instant each, and what retired groups counted.
    func reset() {
        retired.removeAll()
        for group in groups { group.resetAll(ioctls: catalog.architecture.perfIoctls) }
    }

    /// Each sample, with `-p`: threads counted per thread are followed; a cgroup that
    /// another process joined no longer counts the watched process alone, so its groups are
    /// retired (their counts kept) and counting goes on per thread.
    func follow(wanted: [Int]) throws(SourceError) {
        guard pid > 0 else { return }
        guard let cgroup = watchedCGroup else { return try followThreads(wanted: wanted) }
        // Moved to another cgroup (or its cgroup removed): the groups count it no more.
        let moved = !cgroup.holds(process: pid, proc: paths.proc)
        guard moved || !cgroup.stillOnly(pid: pid) else { return }
        watchedCGroup = nil
        retireGroups { _ in true }
        if !moved {
            warnings.append("tracepoint: another process joined cgroup \(cgroup.path) of pid \(pid); "
                + "counting its threads from now on (counts so far kept)")
        } else if FileSystem.exists("\(paths.proc)/\(pid)") {
            warnings.append("tracepoint: pid \(pid) left cgroup \(cgroup.path) (moved, or the cgroup was removed); "
                + "counting its threads from now on (counts so far kept)")
        }
        try followThreads(wanted: wanted)
    }

    /// Adds every group's counts, and the retired ones', into `totals` (by field).
    func accumulate(into totals: UnsafeMutableBufferPointer<UInt64>) throws(SourceError) {
        for (field, value) in retired.all { totals[field] &+= value }
        for group in groups {
            do throws(Errno) { try group.accumulate(into: totals) } catch {
                throw SourceError("reading perf events", errno: error)
            }
        }
    }

    /// Keeps one group per live thread of the watched process: retires the groups of threads
    /// that have exited and starts one for every thread not yet counted.
    private func followThreads(wanted: [Int]) throws(SourceError) {
        guard let tids = try? FileSystem.numericEntries("\(paths.proc)/\(pid)/task") else { return }
        let live = Set(tids)
        if watchedThreads.count > live.count || !watchedThreads.isSubset(of: live) {
            retireGroups { !live.contains(Int($0.pid)) }
        }
        vanishedThreads.formIntersection(live)
        let fresh = tids.filter { !watchedThreads.contains($0) && !vanishedThreads.contains($0) }
        guard !fresh.isEmpty else { return }
        try add(fresh.map { (pid: Int32($0), cpu: Int32(-1)) }, wanted: wanted)
    }

    /// Closes the groups of threads that have exited, keeping what they counted. QEMU starts
    /// and ends worker threads all the time; their groups would otherwise pile up until the
    /// descriptor limit ends kvmstat. A thread leaves /proc only after the kernel has
    /// finished its perf events (perf_event_exit_task comes before the thread is released),
    /// so the last read of a gone thread's group is final.
    private func retireGroups(where gone: (PerfGroup) -> Bool) {
        let scratch = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: catalog.fields.count)
        defer { scratch.deallocate() }
        var kept: [PerfGroup] = []
        var closing: [PerfGroup] = []
        for group in groups {
            guard gone(group) else {
                kept.append(group)
                continue
            }
            scratch.update(repeating: 0)
            try? group.accumulate(into: scratch)
            for field in group.slots where scratch[field] > 0 { retired.add(scratch[field], for: field, guest: pid) }
            if let thread = group.thread { watchedThreads.remove(thread) }
            closing.append(group)
        }
        groups = kept
        opener.close(closing)
    }

    private func add(_ targets: [(pid: Int32, cpu: Int32)], wanted: [Int], cgroup: Bool = false) throws(SourceError) {
        let outcome = try opener.open(targets, plans: wanted.compactMap(catalog.plan(for:)), cgroup: cgroup)
        for group in outcome.opened {
            groups.append(group)
            if let thread = group.thread { watchedThreads.insert(thread) }
        }
        vanishedThreads.formUnion(outcome.vanished)
        if let failure = outcome.failure { throw opener.failure(failure) }
    }

    /// Sets up cgroup counting for `pid` if it is alone in its cgroup and that needs fewer
    /// events; false (with a note why) when per-thread counting applies.
    private func countThroughCGroup(wanted: [Int]) throws(SourceError) -> Bool {
        // Nothing wanted: per-thread counting opens groups when a filter wants something.
        guard !wanted.isEmpty else { return false }
        let threads = (try? FileSystem.numericEntries("\(paths.proc)/\(pid)/task"))?.count ?? 0
        let perThread = "tracepoint: -p \(pid): one group per thread"
        guard let cgroup = CGroup.of(pid: pid, paths: paths) else {
            notes.append("\(perThread) (\(threads) threads): "
                + (paths.cgroup2 == nil ? "no cgroup v2 hierarchy is mounted" : "its cgroup v2 group is unknown"))
            return false
        }
        guard cgroup.holdsOnly(pid: pid, proc: paths.proc) else {
            notes.append("\(perThread) (\(threads) threads): its cgroup \(cgroup.path) holds other processes too")
            return false
        }
        let cpus = try TracepointCatalog.onlineCPUs(paths)
        guard cpus.count <= threads else {
            notes.append("\(perThread): \(threads) threads need fewer events than \(cpus.count) CPUs "
                + "through its cgroup \(cgroup.path)")
            return false
        }
        let directory: FileDescriptor
        do throws(Errno) { directory = try FileDescriptor.open(cgroup.directory, .directory) } catch {
            notes.append("\(perThread): cannot open \(cgroup.directory): \(error)")
            return false
        }
        // The events hold the cgroup themselves: the directory is not needed once they exist.
        defer { directory.close() }
        let started = Signals.monotonicNow()
        do {
            try add(cpus.map { (pid: directory.rawValue, cpu: Int32($0)) }, wanted: wanted, cgroup: true)
        } catch {
            if let errno = error.errno, errno == .tooManyOpenFiles || errno == .tooManyOpenFilesInSystem {
                throw error
            }
            // A kernel without cgroup perf events (CONFIG_CGROUP_PERF off) says EINVAL or
            // EOPNOTSUPP, CPU-wide events may need more privilege than per-thread ones
            // (perf_event_paranoid), the cgroup may have gone: count per thread.
            retireGroups { _ in true }
            retired.removeAll()
            notes.append("\(perThread) (\(threads) threads): the kernel refused cgroup events (\(error))")
            return false
        }
        watchedCGroup = cgroup
        let milliseconds = Int(((Signals.monotonicNow() - started) * 1000).rounded())
        notes.append("tracepoint: -p \(pid): through its cgroup \(cgroup.path): one group per CPU "
            + "(\(cpus.count) CPUs) instead of one per thread (\(threads) threads); "
            + "\(opener.openDescriptors) events opened in \(milliseconds) ms")
        return true
    }
}
