import KVMCore

/// What the tracepoint source keeps for its by-guest view (`b`, `--by-guest`): per guest that
/// is alone in its cgroup v2 group, one group per CPU counting that cgroup; guests that share
/// a cgroup (or have none) are looked at again every `recheckEvery` samples, and at once when
/// they move to another cgroup (libvirt moves a new QEMU into its scope just after starting it).
struct TracepointGuests {
    struct Guest {
        let cgroup: CGroup
        var groups: [PerfGroup]
    }

    static let recheckEvery = 10

    var guests: [Int: Guest] = [:]
    /// Guests not counted on their own: the sample they were last checked at, and their
    /// cgroup then (a guest moved to another cgroup is checked again at once).
    var shared: [Int: (sample: Int, cgroup: String?)] = [:]
    /// What guests that have quit counted.
    var departed: UInt64 = 0
    var sample = 0
    var cpus: [Int] = []
    var scratch: UnsafeMutableBufferPointer<UInt64>?

    var active: Bool { !guests.isEmpty || !shared.isEmpty }
}

/// By-guest counting through cgroups. Rows: each guest alone in its cgroup (what its cgroup
/// counted since it was found), the guests that have quit, and one row for the rest — the
/// host and guests without a cgroup of their own — so that rows add up to the system-wide
/// total. The cost is guests × CPUs × fields events (README's scaling table).
extension TracepointSource {
    /// Each guest's row sum, read now (before the system-wide groups are).
    func readGuestSums() throws(SourceError) -> [Int: UInt64] {
        try followGuests()
        let scratch = guestState.scratch!
        var sums: [Int: UInt64] = [:]
        for (guestPid, guest) in guestState.guests {
            scratch.update(repeating: 0)
            for group in guest.groups { try? group.accumulate(into: scratch) }
            sums[guestPid] = rowSum(scratch)
        }
        return sums
    }

    /// By-guest rows from the guests' sums and the total read after them (with `-p`: the
    /// watched guest's one row).
    func guestRows(_ guestSums: [Int: UInt64]) -> [EventID: UInt64] {
        if pid > 0 { return [.guestTotal(pid): rowSum(totals)] }
        var rows: [EventID: UInt64] = [:]
        var counted: UInt64 = 0
        for (guestPid, sum) in guestSums {
            rows[.guestTotal(guestPid)] = sum
            counted &+= sum
        }
        counted &+= guestState.departed
        let all = rowSum(totals)
        rows[.guestTotal(EventID.otherGuests)] = all >= counted ? all - counted : 0
        if guestState.departed > 0 { rows[.guestTotal(EventID.departedGuests)] = guestState.departed }
        return rows
    }

    /// A row is the sum of the wanted events (children are part of their parents).
    private func rowSum(_ counts: UnsafeMutableBufferPointer<UInt64>) -> UInt64 {
        var sum: UInt64 = 0
        for field in wanted where keys[field].parent == nil { sum &+= counts[field] }
        return sum
    }

    /// Finds guests (processes with `-name`), opens the groups of those alone in a cgroup,
    /// and retires those that have quit, keeping what they counted.
    func followGuests() throws(SourceError) {
        guestState.sample += 1
        if guestState.scratch == nil {
            guestState.scratch = .allocate(capacity: keys.count)
            guestState.cpus = try onlineCPUs()
        }
        let registry = Guests(proc: paths.proc)
        let present = Set(registry.all().map(\.pid).filter { registry.isRunning($0) })
        for (guestPid, guest) in guestState.guests where !present.contains(guestPid) {
            let scratch = guestState.scratch!
            scratch.update(repeating: 0)
            for group in guest.groups { try? group.accumulate(into: scratch) }
            guestState.departed &+= rowSum(scratch)
            closeGroups(guest.groups)
            guestState.guests[guestPid] = nil
        }
        guestState.shared = guestState.shared.filter { present.contains($0.key) }
        for guestPid in present.sorted() where guestState.guests[guestPid] == nil {
            // One read of the guest's cgroup a sample: it tells whether the guest moved.
            let now = (sample: guestState.sample, cgroup: CGroup.path(ofProcess: guestPid, proc: paths.proc))
            if let checked = guestState.shared[guestPid],
               guestState.sample - checked.sample < TracepointGuests.recheckEvery,
               now.cgroup == checked.cgroup { continue }
            guard let cgroup = CGroup.of(pid: guestPid, paths: paths), cgroup.path != "/",
                  cgroup.holdsOnly(pid: guestPid, proc: paths.proc),
                  let directory = try? FileDescriptor.open(cgroup.directory, .directory)
            else {
                guestState.shared[guestPid] = now
                continue
            }
            defer { directory.close() }
            let (opened, _, failure) = try openGroups(
                guestState.cpus.map { (pid: directory.rawValue, cpu: Int32($0)) }, cgroup: true)
            if let failure {
                closeGroups(opened)
                // Out of descriptors is the operator's to fix; anything else (no cgroup perf
                // events in this kernel, the guest and its cgroup just went) leaves the guest
                // in the rest's row.
                if failure == .tooManyOpenFiles || failure == .tooManyOpenFilesInSystem { throw openError(failure) }
                guestState.shared[guestPid] = now
                continue
            }
            guestState.shared[guestPid] = nil
            guestState.guests[guestPid] = TracepointGuests.Guest(cgroup: cgroup, groups: opened)
        }
    }

    /// Every wanted event per guest (Prometheus's guest labels): the watched guest's totals
    /// with `-p`, else each guest's cgroup groups.
    func collectGuestEvents() throws(SourceError) -> [EventID: UInt64] {
        var results: [EventID: UInt64] = [:]
        func add(_ counts: UnsafeMutableBufferPointer<UInt64>, guest: Int) {
            for field in wanted {
                results[EventID(keys[field].name, parent: keys[field].parent, guest: guest)] = counts[field]
            }
        }
        if pid > 0 {
            add(totals, guest: pid)
            return results
        }
        try followGuests()
        let scratch = guestState.scratch!
        for (guestPid, guest) in guestState.guests {
            scratch.update(repeating: 0)
            for group in guest.groups { try? group.accumulate(into: scratch) }
            add(scratch, guest: guestPid)
        }
        return results
    }

    /// Leaves the by-guest view: its groups are closed (reopened when asked again).
    func releaseGuestGroups() {
        for guest in guestState.guests.values { closeGroups(guest.groups) }
        guestState.scratch?.deallocate()
        guestState = TracepointGuests()
    }

    /// Zeroes the guests' groups and what departed guests counted.
    func resetGuestGroups() {
        for guest in guestState.guests.values {
            for group in guest.groups { group.resetAll(ioctls: architecture.perfIoctls) }
        }
        guestState.departed = 0
    }
}
