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
/// (QEMU's monitor, libvirt; a plugin's daemon): each statistic's kind per guest, each guest's
/// readings and counts since kvmstat's baseline (`GuestCounters`) and what departed guests
/// counted; the sums, per-guest values and field selection the modes need. Guests are keyed
/// by their process's pid (a special key below zero for one with no local process).
///
/// Counting follows `CounterBook`'s rule (a counter below its last reading was reset and
/// counted the new value; sums wrap at 2^64); the tables are the guests' own flat arrays by
/// field number (`numbering`), so hundreds of guests cost a few kilobytes each.
public struct GuestStatBook: Sendable {
    /// Statistics and their per-vCPU fields, numbered once for all guests.
    public private(set) var numbering = StatisticNumbering()
    private var guests: [Int: GuestCounters] = [:]
    /// What departed guests counted, by field number.
    private var departed = Departed<Int32>()
    /// Every statistic any guest ever had (departed guests' counts stay reported), sorted,
    /// and those the filter wants (statistics and per-vCPU children, as tracepoints' are).
    public private(set) var fields: [String] = []
    public private(set) var wanted: Set<String> = []
    private var allFields: Set<String> = []
    /// Per field number, what of it `wanted` names (`Wants`), made with the selection.
    private var fieldWants: [Wants] = []
    /// Statistics that went backwards, warned about once each.
    private var oddities: Set<String> = []

    public init() {}

    /// Statistics and their per-vCPU children kept at most: those of departed guests stay
    /// reported, so a churn of guests with ever new names (another user's fake monitors) must
    /// not grow the output and memory without end. KVM has about 40 statistics; 240 vCPUs'
    /// children of all of them fit.
    public static let maxStatistics = StatisticNumbering.maxStatistics
    public static let maxFields = StatisticNumbering.maxFields

    public var pids: [Int] { Array(guests.keys) }

    public func kinds(of pid: Int) -> [String: StatKind] { guests[pid]?.kinds ?? [:] }

    /// Starts keeping a guest (no-op for one already kept), named `name`.
    public mutating func admit(_ pid: Int, name: String, countsFromZero: Bool) {
        if guests[pid] == nil {
            guests[pid] = GuestCounters(name: name, countsFromZero: countsFromZero)
        } else if guests[pid]!.name != name {
            guests[pid]!.name = name
        }
    }

    /// What a read of the guests in view (all with `pid` 0) gives: the wanted statistics'
    /// totals (or rows by guest), each guest's values when asked, and the guests' names.
    /// Guests' values are keyed as `origin` (the source's name) reports them, so that the
    /// sample takes them as they are (a big host's are hundreds of thousands).
    public func reading(_ request: ReadRequest, pid: Int, families: [String: MetricFamily], origin: String) -> Reading {
        var reading = Reading(families: families, values: totals(byGuest: request.byGuest, pid: pid))
        if request.perGuest { reading.guestValues = guestEvents(pid: pid, origin: origin) }
        var names: [Int: String] = [:]
        names.reserveCapacity(pid == 0 ? guests.count : 1)
        for (guestPid, guest) in guests where pid == 0 || guestPid == pid { names[guestPid] = guest.name }
        reading.guestNames = names
        return reading
    }

    /// Guests not in `present` have gone: what they counted stays, as departed.
    public mutating func keepOnly(_ present: Set<Int>, watching pid: Int, proc: String) {
        let gone = guests.keys.filter { !present.contains($0) }
        for guestPid in gone {
            let guest = guests.removeValue(forKey: guestPid)!
            for slot in 0..<guest.slotCount where guest.kind(ofField: guest.slotField[slot], numbering) == .counter {
                departed.add(guest.counted[slot], for: guest.slotField[slot], guest: guestPid)
            }
        }
        if !gone.isEmpty { departed.forgetEnded(watching: pid, proc: proc) }
    }

    public mutating func setKinds(_ guestKinds: [String: StatKind], of pid: Int) {
        guard guests[pid] != nil, guests[pid]!.kinds != guestKinds else { return }
        guests[pid]!.kinds = guestKinds
        guests[pid]!.learnKinds(numbering, again: true)
    }

    /// Takes a guest's values; returns the statistics that went backwards for the first
    /// time (to warn about once). Histograms and statistics of unknown kind are not counted.
    public mutating func record(_ readings: [GuestReading], of pid: Int) -> [String] {
        guard let kinds = guests[pid]?.kinds else { return [] }
        var numbered: [NumberedReading] = []
        numbered.reserveCapacity(readings.count)
        for reading in readings {
            // Only statistics of a kind kept are numbered (the table is bounded).
            guard let kind = kinds[reading.name], kind != .histogram,
                  let statistic = numbering.numbering(reading.name) else { continue }
            // A vCPU index out of KVM's range is no field (`numbering` refuses it).
            let vcpu = reading.vcpu.map { (0..<StatisticNumbering.maxVCPUs).contains($0) ? Int32($0) : Int32.max } ?? -1
            numbered.append(NumberedReading(statistic: statistic, vcpu: vcpu, value: reading.value))
        }
        return record(numbered: numbered, of: pid)
    }

    /// Takes a guest's values by number (`numbering`'s), in the order its reader gives them.
    public mutating func record(numbered readings: [NumberedReading], of pid: Int) -> [String] {
        // Taken out of the table meanwhile, so its arrays are changed in place, never copied.
        guard var guest = guests.removeValue(forKey: pid) else { return [] }
        var added: [Int32] = []
        let wentBack = guest.record(readings, numbering: &numbering) { added.append($0) }
        guests[pid] = consume guest
        for field in added {
            let key = numbering.keys[Int(field)]
            if !allFields.contains(key.name) {
                allFields.insert(key.parent ?? key.name)
                allFields.insert(key.name)
            }
        }
        return wentBack.map { numbering.names[Int(numbering.fieldStatistic[Int($0)])] }.filter { oddities.insert($0).inserted }
    }

    /// A statistic's number, numbering it if new (nil when the table is full): readers that
    /// look names up by number, and histograms' fields (kept by their reader), are numbered
    /// here, once for all.
    public mutating func statisticNumber(_ name: String) -> Int32? { numbering.numbering(name) }

    public mutating func fieldNumber(_ statistic: Int32, vcpu: Int32) -> Int32? {
        numbering.field(statistic, vcpu: vcpu)
    }

    /// What of a field the selection wants: its own row, and (a vCPU's) its statistic's.
    private struct Wants: OptionSet {
        let rawValue: UInt8
        static let own = Wants(rawValue: 1)
        static let parent = Wants(rawValue: 2)
        /// A counter of time (`halt_wait_ns`), not of events.
        static let time = Wants(rawValue: 4)
        /// Its statistic is wanted (its own name for a VM's value, its parent's for a vCPU's).
        static let statistic = Wants(rawValue: 8)
    }

    private func wants(_ field: Int32) -> Wants {
        if Int(field) < fieldWants.count { return fieldWants[Int(field)] }
        let key = numbering.keys[Int(field)]
        var wants: Wants = []
        if wanted.contains(key.name) { wants.insert(.own) }
        if let parent = key.parent, wanted.contains(parent) { wants.insert(.parent) }
        if (key.parent ?? key.name).hasSuffix("_ns") { wants.insert(.time) }
        if wanted.contains(key.parent ?? key.name) { wants.insert(.statistic) }
        return wants
    }

    /// Each wanted value of each guest in view (all with `pid` 0): counts since the baseline,
    /// levels as they are.
    private func values(pid: Int, _ body: (Int, Int32, Wants, GuestCounters.Kind, UInt64) -> Void) {
        for (guestPid, guest) in guests where pid == 0 || guestPid == pid {
            for slot in 0..<guest.slotCount where guest.read[slot] {
                let field = guest.slotField[slot]
                let wants = wants(field)
                guard wants.contains(.own) || wants.contains(.parent) else { continue }
                switch guest.kind(ofField: field, numbering) {
                case .counter: body(guestPid, field, wants, .counter, guest.counted[slot])
                case .level: body(guestPid, field, wants, .level, guest.last[slot])
                case .unknown, .histogram: continue
                }
            }
        }
    }

    /// Each guest's values of the wanted statistics, keyed by guest.
    private func guestEvents(pid: Int, origin: String) -> GuestValues {
        var results = GuestValues()
        // A field's column found once, not once per guest.
        var columns = [Int](repeating: -1, count: numbering.fieldCount)
        var row = -1, rowGuest = Int.min
        values(pid: pid) { guestPid, field, _, _, amount in
            if columns[Int(field)] < 0 { columns[Int(field)] = results.column(numbering.keys[Int(field)].from(origin)) }
            if guestPid != rowGuest { (row, rowGuest) = (results.row(guestPid), guestPid) }
            results.set(amount, row: row, column: columns[Int(field)])
        }
        return results
    }

    /// The filter and the number of fields the selection was made for: fields only grow, so
    /// it is made again (a sort and a regex match per field) only when either changed, not
    /// every sample.
    private var selection: (pattern: String?, fields: Int, numbered: Int)?

    /// Takes in the statistics guests have now (those within the bounds) and applies `filter`.
    public mutating func select(_ filter: FieldFilter?) {
        if let selection, selection.pattern == filter?.pattern, selection.fields == allFields.count,
           selection.numbered == numbering.fieldCount { return }
        if selection?.pattern != filter?.pattern || selection?.fields != allFields.count {
            fields = allFields.sorted()
            wanted = Set(filter.select(fields, parentOf: FieldName.tracepointParent(of:)).map { fields[$0] })
        }
        fieldWants = []
        fieldWants = (0..<numbering.fieldCount).map { wants(Int32($0)) }
        selection = (filter?.pattern, allFields.count, numbering.fieldCount)
    }

    /// New baselines from the values read now (`readNow`); other guests take theirs when next
    /// read, and nothing counts from zero any more.
    public mutating func reset(readNow: Set<Int>) {
        for guestPid in Array(guests.keys) { guests[guestPid]!.reset(keepLast: readNow.contains(guestPid)) }
        departed.removeAll()
    }

    /// Sums over the guests in view (all with `pid` 0): per statistic (VM values and the sum
    /// of the vCPUs'), per vCPU as children, or per guest (counters only).
    private func totals(byGuest: Bool, pid: Int) -> [EventID: UInt64] {
        var results: [EventID: UInt64] = [:]
        results.reserveCapacity(byGuest ? guests.count : wanted.count)
        if byGuest {
            let timeOnly = wanted.allSatisfy { $0.hasSuffix("_ns") || FieldName.tracepointParent(of: $0) != nil }
            for guestPid in guests.keys where pid == 0 || guestPid == pid { results[.guestTotal(guestPid)] = 0 }
            var guestPid = Int.min
            var sum: UInt64 = 0
            values(pid: pid) { owner, _, wants, kind, amount in
                // A row sums events: counters of time (`halt_wait_ns`) are not events (upstream's
                // debugfs leaves them out too) and would swamp the counts, unless time is all
                // there is (the vcpu source's rows: its threads' nanoseconds).
                guard kind == .counter, wants.contains(.statistic),
                      timeOnly || !wants.contains(.time) else { return }
                if owner != guestPid {
                    if guestPid != Int.min { results[.guestTotal(guestPid), default: 0] &+= sum }
                    guestPid = owner
                    sum = 0
                }
                sum &+= amount
            }
            if guestPid != Int.min { results[.guestTotal(guestPid), default: 0] &+= sum }
            return results
        }
        // Every wanted statistic has its row, at 0 when no guest has it now.
        for field in wanted where FieldName.tracepointParent(of: field) == nil { results[EventID(field)] = 0 }
        // Sums by field number and by statistic number first; keys made once each at the end.
        // A value goes to its own row when wanted, and a vCPU's also into its statistic's
        // total (vCPU statistics exist only per vCPU, so nothing is counted twice).
        var byField = [UInt64](repeating: 0, count: numbering.fieldCount)
        var hasField = [Bool](repeating: false, count: numbering.fieldCount)
        var byStatistic = [UInt64](repeating: 0, count: numbering.statisticCount)
        var hasStatistic = [Bool](repeating: false, count: numbering.statisticCount)
        func add(_ field: Int32, _ wants: Wants, _ amount: UInt64) {
            if wants.contains(.own) {
                byField[Int(field)] &+= amount
                hasField[Int(field)] = true
            }
            if wants.contains(.parent) {
                let statistic = Int(numbering.fieldStatistic[Int(field)])
                byStatistic[statistic] &+= amount
                hasStatistic[statistic] = true
            }
        }
        values(pid: pid) { _, field, wants, _, amount in add(field, wants, amount) }
        for (field, value) in departed.counts(watching: pid) { add(field, wants(field), value) }
        for field in byField.indices where hasField[field] {
            results[numbering.keys[field], default: 0] &+= byField[field]
        }
        for statistic in byStatistic.indices where hasStatistic[statistic] {
            results[EventID(numbering.names[statistic]), default: 0] &+= byStatistic[statistic]
        }
        return results
    }
}
