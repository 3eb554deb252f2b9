import Dispatch
import KVMCore

/// Opens and closes the tracepoint source's perf groups and keeps count of their
/// descriptors: raises the descriptor limit as needed, and says what the kernel refuses in
/// words for the operator (missing privilege; the limit, with a way out: a narrower `-f`).
final class GroupOpener {
    let architecture: any Architecture
    private let proc: String
    /// Descriptors of every group open now (the source's, the guests').
    private(set) var openDescriptors = 0

    init(architecture: any Architecture, proc: String) {
        self.architecture = architecture
        self.proc = proc
    }

    /// What opening groups for several targets gave: the groups, the threads that were gone,
    /// and the first failure.
    struct Outcome {
        var opened: [PerfGroup] = []
        var vanished: [Int] = []
        var failure: Errno?
    }

    /// Opens one group of `plans` per target (a CPU, a thread, or with `cgroup` a cgroup
    /// directory's descriptor on a CPU). The kernel takes tens of microseconds per
    /// tracepoint event, so groups are opened on several threads at once.
    func open(_ targets: [(pid: Int32, cpu: Int32)], plans: [TracepointCatalog.EventPlan], cgroup: Bool)
        throws(SourceError) -> Outcome
    {
        guard !plans.isEmpty else { return Outcome() }
        try raiseDescriptorLimit(adding: targets.count * (plans.count + 1))
        let architecture = self.architecture
        let proc = self.proc
        let slots = targets.map { _ in GroupSlot() }
        let workers = min(targets.count, 4, ResourceLimits.onlineProcessors())
        let open = { @Sendable (worker: Int) in
            var i = worker
            while i < targets.count {
                slots[i].result = Self.openGroup(pid: targets[i].pid, cpu: targets[i].cpu, cgroup: cgroup,
                                                 plans: plans, architecture: architecture, proc: proc)
                i += workers
            }
        }
        if workers == 1 { open(0) } else if workers > 1 {
            DispatchQueue.concurrentPerform(iterations: workers, execute: open)
        }
        var outcome = Outcome()
        for (slot, target) in zip(slots, targets) {
            switch slot.result {
            case .success(let group?):
                outcome.opened.append(group)
                openDescriptors += group.descriptors.count
            case .success(nil):
                if target.pid > 0 && !cgroup { outcome.vanished.append(Int(target.pid)) }
            case .failure(let error): outcome.failure = outcome.failure ?? error
            }
        }
        return outcome
    }

    /// Opens the `missing` plans in a stopped group (a filter widened). A thread that exited
    /// meanwhile keeps its group as it is until it is retired.
    func fill(_ group: PerfGroup, with missing: [TracepointCatalog.EventPlan]) throws(SourceError) {
        guard !missing.isEmpty else { return }
        try raiseDescriptorLimit(adding: missing.count)
        let before = group.members.count
        defer { openDescriptors += group.members.count - before }
        do throws(Errno) { try Self.add(missing, to: group, architecture: architecture) } catch {
            if let thread = group.thread, Self.threadGone(Int32(thread), error, proc: proc) { return }
            throw failure(error)
        }
    }

    /// Closes groups at once (a thread's or a guest's that went).
    func close(_ groups: [PerfGroup]) {
        let descriptors = groups.flatMap(\.descriptors)
        openDescriptors -= descriptors.count
        for fd in descriptors { fd.close() }
    }

    /// Takes groups' descriptors out of the count, for someone else to close (the hand-off
    /// child that pays the kernel's slow teardown).
    func release(_ groups: [PerfGroup]) -> [FileDescriptor] {
        let descriptors = groups.flatMap(\.descriptors)
        openDescriptors -= descriptors.count
        return descriptors
    }

    /// Opens a group of `plans` for one CPU or thread, complete before it starts counting;
    /// nil when the thread is gone.
    private static func openGroup(
        pid: Int32, cpu: Int32, cgroup: Bool, plans: [TracepointCatalog.EventPlan], architecture: any Architecture,
        proc: String
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
        _ plans: [TracepointCatalog.EventPlan], to group: PerfGroup, architecture: any Architecture
    ) throws(Errno) {
        for plan in plans {
            try group.add(field: plan.field, tracepointID: plan.tracepointID,
                          filter: plan.filter, architecture: architecture)
        }
    }

    /// The kernel's refusal in words for the operator.
    func failure(_ error: Errno) -> SourceError {
        switch error {
        case .permissionDenied, .notPermitted:
            return SourceError("perf_event_open", errno: error, advice: "kvmstat needs CAP_SYS_ADMIN (root) or "
                + "/proc/sys/kernel/perf_event_paranoid < 1 to count tracepoints")
        case .tooManyOpenFiles, .tooManyOpenFilesInSystem:
            return SourceError("perf_event_open", errno: error, advice: "\(openDescriptors + 50) open files "
                + "needed; raise the limit (ulimit -n) or use a narrower -f filter")
        default:
            return SourceError("perf_event_open", errno: error)
        }
    }

    private func raiseDescriptorLimit(adding count: Int) throws(SourceError) {
        // Headroom for the standard streams, debugfs reads and log files, as upstream keeps.
        let needed = openDescriptors + count + 50
        guard ResourceLimits.openFilesSoftLimit() < needed else { return }
        do throws(Errno) { try ResourceLimits.ensureOpenFiles(needed) } catch {
            // Root without CAP_SYS_RESOURCE (a container) cannot raise the hard limit either.
            let who = ResourceLimits.runningAsRoot
                ? "kvmstat lacks CAP_SYS_RESOURCE to raise the hard limit (a container?); raise it "
                    + "where kvmstat is started (ulimit -Hn, LimitNOFILE=)"
                : "run as root or raise the hard limit (ulimit -Hn)"
            throw SourceError("NOFILE rlimit could not be raised to \(needed)", errno: error,
                              advice: who + ", or count fewer events with a narrower -f filter")
        }
    }
}

/// One group's outcome from a worker thread; each slot is written by one worker only and read
/// after all have finished.
private final class GroupSlot: @unchecked Sendable {
    var result: Result<PerfGroup?, Errno> = .success(nil)
}
