import KVMCore

/// What a statistic measures, as KVM's binary statistics say: a cumulative counter (totals
/// and rates), a level (instant or peak values, shown as they are), or a histogram.
enum StatKind: Sendable, Equatable {
    case counter, level, histogram
}

/// One value a guest reported: a VM-wide statistic (`vcpu` nil) or one vCPU's.
struct GuestReading: Sendable {
    var name: String
    var vcpu: Int?
    var value: UInt64
}

/// The bookkeeping of the sources that read KVM's statistics per guest from a userspace
/// agent (QEMU's monitor, libvirt): each guest's last values and what its counters counted
/// since kvmstat's baseline, what departed guests counted, and the sums the modes show.
/// Guests are keyed by their QEMU process's pid, as the debugfs source's are.
struct GuestStatBook {
    struct Guest {
        var kinds: [String: StatKind] = [:]
        var last: [EventID: UInt64] = [:]
        var counted: [EventID: UInt64] = [:]
        /// Counts everything it reports (it started after kvmstat, or `-i`), not only what
        /// happened since its first reading.
        var countsFromZero: Bool
    }

    private(set) var guests: [Int: Guest] = [:]
    /// Every statistic any guest ever had (departed guests' counts stay reported), sorted,
    /// and those the filter wants (statistics and per-vCPU children, as tracepoints' are).
    private(set) var fields: [String] = []
    private(set) var wanted: Set<String> = []
    private var allFields: Set<String> = []
    private var departed = DepartedCounts<EventID>()
    /// Statistics that went backwards, warned about once each.
    private var oddities: Set<String> = []

    var pids: Dictionary<Int, Guest>.Keys { guests.keys }

    func kinds(of pid: Int) -> [String: StatKind] { guests[pid]?.kinds ?? [:] }

    /// Starts keeping a guest (no-op for one already kept).
    mutating func admit(_ pid: Int, countsFromZero: Bool) {
        if guests[pid] == nil { guests[pid] = Guest(countsFromZero: countsFromZero) }
    }

    /// Guests not in `present` have gone: their counters' counts are kept as departed.
    mutating func keepOnly(_ present: Set<Int>, watching pid: Int, proc: String) {
        let gone = guests.keys.filter { !present.contains($0) }
        for guestPid in gone {
            let guest = guests.removeValue(forKey: guestPid)!
            for (key, value) in guest.counted where guest.kinds[key.parent ?? key.name] == .counter {
                departed.add(value, for: key, guest: guestPid)
            }
        }
        if !gone.isEmpty { departed.forgetEnded(watching: pid, proc: proc) }
    }

    mutating func setKinds(_ kinds: [String: StatKind], of pid: Int) {
        guests[pid]?.kinds = kinds
    }

    /// Takes a guest's values; returns the statistics that went backwards for the first
    /// time (to warn about once). Histograms and statistics of unknown kind are not counted.
    mutating func record(_ readings: [GuestReading], of pid: Int) -> [String] {
        guard var guest = guests[pid] else { return [] }
        defer { guests[pid] = guest }
        var backwards: [String] = []
        for reading in readings {
            guard let kind = guest.kinds[reading.name], kind != .histogram else { continue }
            let key = reading.vcpu.map { EventID("\(reading.name)(vcpu\($0))", parent: reading.name, vcpu: $0) }
                ?? EventID(reading.name)
            guard let previous = guest.last[key] else {
                guest.last[key] = reading.value
                guest.counted[key] = kind == .counter && guest.countsFromZero ? reading.value : 0
                continue
            }
            guest.last[key] = reading.value
            guard kind == .counter else { continue }
            let step = Counting.step(from: previous, to: reading.value)
            guest.counted[key, default: 0] &+= step.amount
            if step.wentBackwards && oddities.insert(reading.name).inserted { backwards.append(reading.name) }
        }
        return backwards
    }

    /// Each guest's values of the wanted statistics (counts since the baseline, levels as
    /// they are), keyed by guest.
    func guestEvents(wanted: Set<String>, pid: Int) -> [EventID: UInt64] {
        var results: [EventID: UInt64] = [:]
        for (guestPid, guest) in guests where pid == 0 || guestPid == pid {
            for (key, last) in guest.last {
                let field = key.parent ?? key.name
                guard wanted.contains(field) || wanted.contains(key.name), let kind = guest.kinds[field] else { continue }
                let amount = kind == .counter ? guest.counted[key] ?? 0 : last
                results[EventID(key.name, parent: key.parent, guest: guestPid, vcpu: key.vcpu)] = amount
            }
        }
        return results
    }

    /// The statistics any guest has as levels.
    func levelNames() -> Set<String> {
        Set(guests.values.flatMap { $0.kinds.filter { $0.value == .level }.keys })
    }

    /// Takes in the statistics guests have now and applies `filter`.
    mutating func select(_ filter: FieldFilter?) {
        allFields.formUnion(fieldNames())
        fields = allFields.sorted()
        wanted = Set(filter.select(fields, parentOf: FieldName.tracepointParent(of:)).map { fields[$0] })
    }

    /// Every statistic and per-vCPU child the guests kept have (histograms left out).
    func fieldNames() -> Set<String> {
        var names = Set(guests.values.flatMap { $0.kinds.filter { $0.value != .histogram }.keys })
        names.formUnion(guests.values.flatMap { $0.last.keys.filter(\.isChild).map(\.name) })
        return names
    }

    /// New baselines from the values read now (`readNow`); other guests take theirs when next
    /// read, and nothing counts from zero any more.
    mutating func reset(readNow: Set<Int>) {
        for key in guests.keys {
            guests[key]!.counted = guests[key]!.counted.mapValues { _ in 0 }
            guests[key]!.countsFromZero = false
            if !readNow.contains(key) { guests[key]!.last.removeAll() }
        }
        departed.removeAll()
    }

    /// Sums over the guests in view (all with `pid` 0): per statistic (VM values and the sum
    /// of the vCPUs'), per vCPU as children, or per guest (counters only).
    func totals(byGuest: Bool, wanted: Set<String>, pid: Int) -> [EventID: UInt64] {
        var results: [EventID: UInt64] = [:]
        for field in wanted where FieldName.tracepointParent(of: field) == nil { results[EventID(field)] = 0 }
        // A value goes to its own row when wanted, and a vCPU's also into its statistic's
        // total (vCPU statistics exist only per vCPU, so nothing is counted twice).
        func add(_ key: EventID, _ amount: UInt64) {
            if wanted.contains(key.name) { results[key, default: 0] &+= amount }
            if let parent = key.parent, wanted.contains(parent) { results[EventID(parent), default: 0] &+= amount }
        }
        for (guestPid, guest) in guests where pid == 0 || guestPid == pid {
            if byGuest { results[.guestTotal(guestPid), default: 0] &+= 0 }
            for (key, last) in guest.last {
                let field = key.parent ?? key.name
                guard wanted.contains(field) || wanted.contains(key.name), let kind = guest.kinds[field] else { continue }
                let amount = kind == .counter ? guest.counted[key] ?? 0 : last
                if byGuest {
                    if kind == .counter && wanted.contains(field) {
                        results[.guestTotal(guestPid), default: 0] &+= amount
                    }
                    continue
                }
                add(key, amount)
            }
        }
        if byGuest {
            for field in wanted { results[EventID(field)] = nil }
        } else {
            for (key, value) in departed.counts(watching: pid) { add(key, value) }
        }
        return results
    }
}
