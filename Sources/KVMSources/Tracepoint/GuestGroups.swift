import KVMCore

/// The tracepoint source's by-guest counting (`b`, `--by-guest`, per-guest values): per guest
/// that is alone in its cgroup v2 group, one group per CPU counting that cgroup; guests that
/// share a cgroup (or have none) are looked at again every `recheckEvery` samples, and at once
/// when they move to another cgroup (libvirt moves a new QEMU into its scope just after
/// starting it).
///
/// Rows: each guest alone in its cgroup (what its cgroup counted since it was found), the
/// guests that have quit, and one row for the rest — the host and guests without a cgroup of
/// their own — so that rows add up to the system-wide total. The cost is guests × CPUs ×
/// fields events (README's scaling table).
final class GuestGroups {
    struct Guest {
        let cgroup: CGroup
        var groups: [PerfGroup]
    }

    static let recheckEvery = 10

    private let catalog: TracepointCatalog
    private let opener: GroupOpener
    private let paths: SystemPaths
    private var guests: [Int: Guest] = [:]
    /// Guests not counted on their own: the sample they were last checked at, and their
    /// cgroup then (a guest moved to another cgroup is checked again at once).
    private var shared: [Int: (sample: Int, cgroup: String?)] = [:]
    /// What guests that have quit counted, by field.
    private var departed = Departed<Int>()
    /// What running guests counted through a cgroup they have since left (moved, or the
    /// cgroup removed), by guest and field: still theirs, in their rows.
    private var carried: [Int: [Int: UInt64]] = [:]
    private var sample = 0
    private var cpus: [Int] = []
    /// Guests already said to share a cgroup (said once each, while they run).
    private var toldShared = Set<Int>()
    private var warnings: [String] = []
    private let scratch: UnsafeMutableBufferPointer<UInt64>

    init(catalog: TracepointCatalog, opener: GroupOpener, paths: SystemPaths) {
        self.catalog = catalog
        self.opener = opener
        self.paths = paths
        scratch = .allocate(capacity: catalog.fields.count)
    }

    deinit { scratch.deallocate() }

    var active: Bool { !guests.isEmpty || !shared.isEmpty }

    /// Each guest's row sum of `wanted`, read now (before the system-wide groups are).
    func rowSums(wanted: [Int]) throws(SourceError) -> [Int: UInt64] {
        try follow(wanted: wanted)
        var sums: [Int: UInt64] = [:]
        for (guestPid, guest) in guests { sums[guestPid] = rowSum(read(guest), wanted: wanted) }
        for (guestPid, counts) in carried {
            for field in wanted where catalog.keys[field].parent == nil { sums[guestPid, default: 0] &+= counts[field] ?? 0 }
        }
        return sums
    }

    /// The rows from the guests' sums and the system-wide `totals` read after them.
    func rows(_ guestSums: [Int: UInt64], totals: UnsafeMutableBufferPointer<UInt64>, wanted: [Int]) -> [EventID: UInt64] {
        var rows: [EventID: UInt64] = [:]
        var counted: UInt64 = 0
        for (guestPid, sum) in guestSums {
            rows[.guestTotal(guestPid)] = sum
            counted &+= sum
        }
        var quit: UInt64 = 0
        for field in wanted where catalog.keys[field].parent == nil { quit &+= departed.all[field] ?? 0 }
        counted &+= quit
        let all = rowSum(totals, wanted: wanted)
        rows[.guestTotal(EventID.otherGuests)] = all >= counted ? all - counted : 0
        if quit > 0 { rows[.guestTotal(EventID.departedGuests)] = quit }
        return rows
    }

    /// A row is the sum of the wanted events (children are part of their parents).
    func rowSum(_ counts: UnsafeMutableBufferPointer<UInt64>, wanted: [Int]) -> UInt64 {
        var sum: UInt64 = 0
        for field in wanted where catalog.keys[field].parent == nil { sum &+= counts[field] }
        return sum
    }

    /// Every wanted event of each guest counted through its cgroup (Prometheus's guest labels).
    func values(wanted: [Int]) throws(SourceError) -> GuestValues {
        try follow(wanted: wanted)
        var results = GuestValues()
        guard !guests.isEmpty || !carried.isEmpty else { return results }
        let columns = wanted.map { results.column(catalog.keys[$0]) }
        for (guestPid, guest) in guests {
            let counts = read(guest), row = results.row(guestPid)
            for (field, column) in zip(wanted, columns) { results.set(counts[field], row: row, column: column) }
        }
        for (guestPid, counts) in carried {
            let row = results.row(guestPid)
            for (field, column) in zip(wanted, columns) { results.add(counts[field] ?? 0, row: row, column: column) }
        }
        return results
    }

    /// A guest's counts, in the scratch buffer (valid until the next read).
    private func read(_ guest: Guest) -> UnsafeMutableBufferPointer<UInt64> {
        scratch.update(repeating: 0)
        for group in guest.groups { try? group.accumulate(into: scratch) }
        return scratch
    }

    /// Finds guests (processes with `-name`), opens the groups of those alone in a cgroup,
    /// and retires those that have quit, keeping what they counted.
    private func follow(wanted: [Int]) throws(SourceError) {
        sample += 1
        if cpus.isEmpty { cpus = try TracepointCatalog.onlineCPUs(paths) }
        let registry = Guests(proc: paths.proc)
        let all = registry.all()
        let present = Set(all.map(\.pid).filter { registry.isRunning($0) })
        for (guestPid, guest) in guests where !present.contains(guestPid) || !guest.cgroup.holds(process: guestPid, proc: paths.proc) {
            // Quit: its counts go to the quit row. Moved out of its cgroup (the groups count it
            // no more): they stay its own, and it is looked at again at once.
            let counts = read(guest)
            let quit = !present.contains(guestPid)
            for field in wanted where counts[field] > 0 {
                if quit {
                    departed.add(counts[field], for: field, guest: guestPid)
                } else {
                    carried[guestPid, default: [:]][field, default: 0] &+= counts[field]
                }
            }
            opener.close(guest.groups)
            guests[guestPid] = nil
            shared[guestPid] = nil
        }
        for (guestPid, counts) in carried where !present.contains(guestPid) {
            for (field, count) in counts { departed.add(count, for: field, guest: guestPid) }
            carried[guestPid] = nil
        }
        shared = shared.filter { present.contains($0.key) }
        toldShared = toldShared.filter { present.contains($0) }
        var untold: [Int] = []
        for guestPid in present.sorted() where guests[guestPid] == nil {
            // One read of the guest's cgroup a sample: it tells whether the guest moved.
            let now = (sample: sample, cgroup: CGroup.path(ofProcess: guestPid, proc: paths.proc))
            if let checked = shared[guestPid], sample - checked.sample < Self.recheckEvery,
               now.cgroup == checked.cgroup { continue }
            guard let opened = try openGroups(of: guestPid, wanted: wanted) else {
                shared[guestPid] = now
                if toldShared.insert(guestPid).inserted { untold.append(guestPid) }
                continue
            }
            shared[guestPid] = nil
            guests[guestPid] = opened
        }
        if !untold.isEmpty {
            let names = Dictionary(all.map { ($0.pid, $0.name) }, uniquingKeysWith: { first, _ in first })
            warnings.append(Self.sharingNotice(untold.map { (pid: $0, name: names[$0] ?? "") }))
        }
    }

    /// Why guests have no row of their own, which ones, and what to do.
    static func sharingNotice(_ guests: [(pid: Int, name: String)]) -> String {
        let shown = guests.prefix(8).map { ($0.name.isEmpty ? "?" : $0.name.escapedForDisplay) + " (pid \($0.pid))" }
        let more = guests.count > shown.count ? " and \(guests.count - shown.count) more" : ""
        return "tracepoint: " + (guests.count == 1 ? "guest " : "guests ") + shown.joined(separator: ", ") + more
            + (guests.count == 1 ? " is" : " are") + " not alone in a cgroup: counted in the "
            + "'\(EventID.specialGuestLabel(EventID.otherGuests)!)' row (start each guest in a cgroup of its own, "
            + "as libvirt and systemd-run --scope do, or use --source bpf or --source qmp)"
    }

    /// What the operator should be told since the last call.
    func takeWarnings() -> [String] {
        defer { warnings.removeAll() }
        return warnings
    }

    /// Per-CPU groups counting the guest's cgroup; nil when it is not alone in one (or the
    /// kernel refuses: no cgroup perf events, the guest and its cgroup just went), leaving it
    /// in the rest's row. Out of descriptors is the operator's to fix: thrown.
    private func openGroups(of guestPid: Int, wanted: [Int]) throws(SourceError) -> Guest? {
        guard let cgroup = CGroup.of(pid: guestPid, paths: paths), cgroup.path != "/",
              cgroup.holdsOnly(pid: guestPid, proc: paths.proc),
              let directory = try? FileDescriptor.open(cgroup.directory, .directory)
        else { return nil }
        defer { directory.close() }
        let outcome = try opener.open(cpus.map { (pid: directory.rawValue, cpu: Int32($0)) },
                                      plans: wanted.compactMap(catalog.plan(for:)), cgroup: true)
        if let failure = outcome.failure {
            opener.close(outcome.opened)
            if failure == .tooManyOpenFiles || failure == .tooManyOpenFilesInSystem { throw opener.failure(failure) }
            return nil
        }
        return Guest(cgroup: cgroup, groups: outcome.opened)
    }

    /// Leaves the by-guest view, or the fields changed: the groups are closed (opened again
    /// when next asked for) and nothing is kept.
    func close() {
        opener.close(guests.values.flatMap(\.groups))
        guests.removeAll()
        shared.removeAll()
        departed.removeAll()
        carried.removeAll()
        toldShared.removeAll()
        sample = 0
    }

    /// Hands every group's descriptors over (for the hand-off child) and forgets everything.
    func release() -> [FileDescriptor] {
        let descriptors = opener.release(guests.values.flatMap(\.groups))
        guests.removeAll()
        close()
        return descriptors
    }

    /// Zeroes the guests' groups and what departed guests counted.
    func reset() {
        for guest in guests.values {
            for group in guest.groups { group.resetAll(ioctls: catalog.architecture.perfIoctls) }
        }
        departed.removeAll()
        carried.removeAll()
    }
}
