import KVMCore

/// What a statistic measures, as KVM's binary statistics say: a cumulative counter (totals
/// and rates), a level (instant or peak values, shown as they are), or a histogram.
public enum StatKind: Sendable, Equatable {
    case counter, level, histogram
}

/// One value a guest reported: a VM-wide statistic (`vcpu` nil) or one vCPU's.
public struct GuestReading: Sendable {
    public var name: String
    public var vcpu: Int?
    public var value: UInt64

    public init(name: String, vcpu: Int? = nil, value: UInt64) {
        self.name = name
        self.vcpu = vcpu
        self.value = value
    }
}

/// The bookkeeping of sources that read named statistics per guest from a userspace agent
/// (QEMU's monitor, libvirt; a plugin's daemon): each statistic's kind per guest, and on a
/// `CounterBook` each guest's readings and counts since kvmstat's baseline and what departed
/// guests counted; the sums, per-guest values and field selection the modes need. Guests are
/// keyed by their process's pid (a special key below zero for one with no local process).
public struct GuestStatBook: Sendable {
    private var kinds: [Int: [String: StatKind]] = [:]
    /// Each guest's name (a QEMU's `-name`, a libvirt domain's).
    private var names: [Int: String] = [:]
    /// Per guest, counts by field number (`fieldKeys`): numbers, not keys, in every guest's
    /// tables (a big host's guests all report the same few hundred statistics and vCPUs).
    private var book = CounterBook<Int, Int32>()
    /// Every statistic any guest ever had (departed guests' counts stay reported), sorted,
    /// and those the filter wants (statistics and per-vCPU children, as tracepoints' are).
    public private(set) var fields: [String] = []
    public private(set) var wanted: Set<String> = []
    private var allFields: Set<String> = []
    /// Statistics that went backwards, warned about once each.
    private var oddities: Set<String> = []

    public init() {}

    public var pids: [Int] { Array(book.entries.keys) }

    public func kinds(of pid: Int) -> [String: StatKind] { kinds[pid] ?? [:] }

    /// Starts keeping a guest (no-op for one already kept), named `name`.
    public mutating func admit(_ pid: Int, name: String, countsFromZero: Bool) {
        book.admit(pid, guest: pid, countsFromZero: countsFromZero)
        if kinds[pid] == nil { kinds[pid] = [:] }
        names[pid] = name
    }

    /// What a read of the guests in view (all with `pid` 0) gives: the wanted statistics'
    /// totals (or rows by guest), each guest's values when asked, and the guests' names.
    public func reading(_ request: ReadRequest, pid: Int, families: [String: MetricFamily]) -> Reading {
        var reading = Reading(families: families, values: totals(byGuest: request.byGuest, wanted: wanted, pid: pid))
        if request.perGuest { reading.guestValues = guestEvents(wanted: wanted, pid: pid) }
        reading.guestNames = names.filter { pid == 0 || $0.key == pid }
        return reading
    }

    /// Guests not in `present` have gone: their counters' counts are kept as departed.
    public mutating func keepOnly(_ present: Set<Int>, watching pid: Int, proc: String) {
        for gone in kinds.keys where !present.contains(gone) {
            kinds[gone] = nil
            names[gone] = nil
        }
        if book.keepOnly(present) { book.forgetEndedGuests(watching: pid, proc: proc) }
    }

    public mutating func setKinds(_ guestKinds: [String: StatKind], of pid: Int) {
        if kinds[pid] != nil { kinds[pid] = guestKinds }
    }

    /// Takes a guest's values; returns the statistics that went backwards for the first
    /// time (to warn about once). Histograms and statistics of unknown kind are not counted.
    public mutating func record(_ readings: [GuestReading], of pid: Int) -> [String] {
        guard let guestKinds = kinds[pid] else { return [] }
        // First what each reading is (its field number; new fields within the bounds), then
        // all of them into the guest's tables at once.
        var planned: [(field: Int32, counter: Bool, value: UInt64, name: String)] = []
        planned.reserveCapacity(readings.count)
        do {
            let known = book.entries[pid]?.last
            for reading in readings {
                guard let kind = guestKinds[reading.name], kind != .histogram,
                      let field = fieldNumber(reading.name, vcpu: reading.vcpu) else { continue }
                // Only statistics within the bounds are kept at all (a guest's, and what
                // departed guests leave in the totals): new names beyond them are not recorded.
                if known?[field] == nil, !withinBounds(fieldKeys[Int(field)]) { continue }
                planned.append((field, kind == .counter, reading.value, reading.name))
            }
        }
        var wentBack: [String] = []
        book.withMember(pid) { tables in
            for item in planned {
                guard item.counter else {
                    tables.keep(item.value, item.field)
                    continue
                }
                if case .wentBackwards = tables.count(item.value, item.field) { wentBack.append(item.name) }
            }
        }
        return wentBack.filter { oddities.insert($0).inserted }
    }

    /// A statistic and vCPU, as a guest's reading names them.
    private struct KeyName: Hashable {
        var name: String
        var vcpu: Int?
    }

    /// Every statistic and vCPU any guest reported, numbered once for all guests (bounded as
    /// the fields are): the key of number i is `fieldKeys[i]`, made once, strings and all.
    private var fieldKeys: [EventID] = []
    private var fieldNumbers: [KeyName: Int32] = [:]

    /// The number of a statistic of a vCPU (or the VM's); nil when the table is full.
    private mutating func fieldNumber(_ name: String, vcpu: Int?) -> Int32? {
        let lookup = KeyName(name: name, vcpu: vcpu)
        if let known = fieldNumbers[lookup] { return known }
        guard fieldKeys.count < Self.maxFields else { return nil }
        let number = Int32(fieldKeys.count)
        fieldKeys.append(Self.key(name, vcpu: vcpu))
        fieldNumbers[lookup] = number
        return number
    }

    /// A statistic's key: `exits`, or a vCPU's `exits(vcpu0)` under `exits`.
    static func key(_ name: String, vcpu: Int?) -> EventID {
        vcpu.map { EventID("\(name)(vcpu\($0))", parent: name, vcpu: $0) } ?? EventID(name)
    }

    /// Each wanted value of each guest in view (all with `pid` 0): counts since the baseline,
    /// levels as they are.
    private func values(wanted: Set<String>, pid: Int, _ body: (Int, EventID, StatKind, UInt64) -> Void) {
        for (guestPid, entry) in book.entries where pid == 0 || guestPid == pid {
            let guestKinds = kinds[guestPid] ?? [:]
            for (number, last) in entry.last {
                let key = fieldKeys[Int(number)]
                let field = key.parent ?? key.name
                guard wanted.contains(field) || wanted.contains(key.name), let kind = guestKinds[field] else { continue }
                body(guestPid, key, kind, kind == .counter ? entry.counted[number] ?? 0 : last)
            }
        }
    }

    /// Each guest's values of the wanted statistics, keyed by guest.
    public func guestEvents(wanted: Set<String>, pid: Int) -> [EventID: UInt64] {
        var results: [EventID: UInt64] = [:]
        results.reserveCapacity(book.entries.values.reduce(0) { $0 + $1.last.count })
        values(wanted: wanted, pid: pid) { guestPid, key, _, amount in results[key.of(guest: guestPid)] = amount }
        return results
    }

    /// Statistics and their per-vCPU children kept at most: those of departed guests stay
    /// reported, so a churn of guests with ever new names (another user's fake monitors) must
    /// not grow the output and memory without end. KVM has about 40 statistics; 240 vCPUs'
    /// children of all of them fit.
    public static let maxStatistics = 256
    public static let maxFields = 16_384

    private var statisticCount = 0

    /// Whether a statistic (or a vCPU's child of one) is within the bounds, admitting it when
    /// there is room: at most `maxStatistics` names and `maxFields` with children, in all.
    private mutating func withinBounds(_ key: EventID) -> Bool {
        let statistic = key.parent ?? key.name
        if !allFields.contains(statistic) {
            guard statisticCount < Self.maxStatistics, allFields.count < Self.maxFields else { return false }
            allFields.insert(statistic)
            statisticCount += 1
        }
        guard key.isChild, !allFields.contains(key.name) else { return true }
        guard allFields.count < Self.maxFields else { return false }
        allFields.insert(key.name)
        return true
    }

    /// The filter and the number of fields the selection was made for: fields only grow, so
    /// it is made again (a sort and a regex match per field) only when either changed, not
    /// every sample.
    private var selection: (pattern: String?, fields: Int)?

    /// Takes in the statistics guests have now (those within the bounds) and applies `filter`.
    public mutating func select(_ filter: FieldFilter?) {
        if let selection, selection.pattern == filter?.pattern, selection.fields == allFields.count { return }
        fields = allFields.sorted()
        wanted = Set(filter.select(fields, parentOf: FieldName.tracepointParent(of:)).map { fields[$0] })
        selection = (filter?.pattern, allFields.count)
    }

    /// New baselines from the values read now (`readNow`); other guests take theirs when next
    /// read, and nothing counts from zero any more.
    public mutating func reset(readNow: Set<Int>) {
        book.reset(keepingLastOf: readNow.contains)
    }

    /// Sums over the guests in view (all with `pid` 0): per statistic (VM values and the sum
    /// of the vCPUs'), per vCPU as children, or per guest (counters only).
    public func totals(byGuest: Bool, wanted: Set<String>, pid: Int) -> [EventID: UInt64] {
        var results: [EventID: UInt64] = [:]
        for field in wanted where FieldName.tracepointParent(of: field) == nil { results[EventID(field)] = 0 }
        // A value goes to its own row when wanted, and a vCPU's also into its statistic's
        // total (vCPU statistics exist only per vCPU, so nothing is counted twice).
        // Statistics' totals by name first (a key made once each, not once per guest and vCPU).
        var parents: [String: UInt64] = [:]
        func add(_ key: EventID, _ amount: UInt64) {
            if wanted.contains(key.name) { results[key, default: 0] &+= amount }
            if let parent = key.parent, wanted.contains(parent) { parents[parent, default: 0] &+= amount }
        }
        if byGuest {
            let timeOnly = wanted.allSatisfy { $0.hasSuffix("_ns") || FieldName.tracepointParent(of: $0) != nil }
            for guestPid in book.entries.keys where pid == 0 || guestPid == pid { results[.guestTotal(guestPid)] = 0 }
            values(wanted: wanted, pid: pid) { guestPid, key, kind, amount in
                // A row sums events: counters of time (`halt_wait_ns`) are not events (upstream's
                // debugfs leaves them out too) and would swamp the counts, unless time is all
                // there is (the vcpu source's rows: its threads' nanoseconds).
                let statistic = key.parent ?? key.name
                if kind == .counter && wanted.contains(statistic) && (timeOnly || !statistic.hasSuffix("_ns")) {
                    results[.guestTotal(guestPid), default: 0] &+= amount
                }
            }
            for field in wanted { results[EventID(field)] = nil }
            return results
        }
        values(wanted: wanted, pid: pid) { _, key, _, amount in add(key, amount) }
        for (number, value) in book.departed.counts(watching: pid) { add(fieldKeys[Int(number)], value) }
        for (parent, amount) in parents { results[EventID(parent), default: 0] &+= amount }
        return results
    }
}
