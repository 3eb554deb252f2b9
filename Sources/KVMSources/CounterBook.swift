import KVMCore

/// The one bookkeeping of every source — built-in or a plugin's — for counters read from
/// something that can go away: a VM's debugfs directory, a QEMU's monitor, a libvirt domain,
/// a thread's perf group. Each *member* (one VM, one QEMU, one group) belongs to a guest (a
/// process id) and keeps, per field, its last reading and what it counted since kvmstat's
/// baseline; members that go away leave what they counted in `departed`, so totals never
/// drop; a reset takes new baselines. Levels (gauges) are kept as read and never counted.
///
/// A counter's rule: what it counted since the last reading is the increment, and a value
/// below the last one means the kernel's counter was reset (written 0, statistics cleared),
/// so it counted the new value. Sums wrap at 2^64 as the kernel's own do.
public struct CounterBook<Member: Hashable & Sendable, Field: Hashable & Sendable>: Sendable {
    /// What one member keeps.
    public struct Entry: Sendable {
        public let guest: Int
        /// Whether a field's first reading is all counted: the member started after kvmstat
        /// did (everything it did happened in view), or `-i` asked for the past.
        public fileprivate(set) var countsFromZero: Bool
        public fileprivate(set) var last: [Field: UInt64] = [:]
        public fileprivate(set) var counted: [Field: UInt64] = [:]
    }

    /// What a counter's new reading did.
    public enum Step: Sendable, Equatable {
        /// Its first reading (a baseline, or counted whole when the member counts from zero).
        case first
        case counted
        /// Below the last reading: the counter was reset; the new value is what it counted.
        case wentBackwards(from: UInt64)
    }

    public private(set) var entries: [Member: Entry] = [:]
    public private(set) var departed = Departed<Field>()

    public init() {}

    public func contains(_ member: Member) -> Bool { entries[member] != nil }

    /// Starts keeping `member` of `guest` (no-op for one already kept).
    public mutating func admit(_ member: Member, guest: Int, countsFromZero: Bool) {
        if entries[member] == nil { entries[member] = Entry(guest: guest, countsFromZero: countsFromZero) }
    }

    /// A counter's reading; nil when `member` is not kept.
    @discardableResult
    public mutating func count(_ value: UInt64, _ field: Field, of member: Member) -> Step? {
        guard entries[member] != nil else { return nil }
        // In place: taking the entry out would copy its tables on every reading.
        return Self.count(value, field, in: &entries[member]!)
    }

    private static func count(_ value: UInt64, _ field: Field, in entry: inout Entry) -> Step {
        guard let previous = entry.last.updateValue(value, forKey: field) else {
            entry.counted[field] = entry.countsFromZero ? value : 0
            return .first
        }
        if value >= previous {
            entry.counted[field, default: 0] &+= value - previous
            return .counted
        }
        entry.counted[field, default: 0] &+= value
        return .wentBackwards(from: previous)
    }

    /// One member's readings taken together (`withMember`): the member looked up once, its
    /// tables changed in place.
    public struct Readings {
        fileprivate var entry: Entry

        public func last(_ field: Field) -> UInt64? { entry.last[field] }

        @discardableResult
        public mutating func count(_ value: UInt64, _ field: Field) -> Step {
            CounterBook.count(value, field, in: &entry)
        }

        public mutating func keep(_ value: UInt64, _ field: Field) { entry.last[field] = value }
    }

    /// Runs `body` on `member`'s readings (nil when it is not kept). Its entry is taken out of
    /// the table meanwhile, so its own tables are changed in place, never copied.
    public mutating func withMember<Result>(_ member: Member, _ body: (inout Readings) -> Result) -> Result? {
        guard let entry = entries.removeValue(forKey: member) else { return nil }
        var readings = Readings(entry: consume entry)
        defer { entries[member] = readings.entry }
        return body(&readings)
    }

    /// A level's reading: kept as it is, never counted.
    public mutating func keep(_ value: UInt64, _ field: Field, of member: Member) {
        entries[member]?.last[field] = value
    }

    /// What `member` counted of `field` since the baseline (nil before its first reading).
    public func counted(_ field: Field, of member: Member) -> UInt64? { entries[member]?.counted[field] }

    /// `member`'s last reading of `field`.
    public func last(_ field: Field, of member: Member) -> UInt64? { entries[member]?.last[field] }

    /// `member` went away: what it counted stays, in `departed` under its guest.
    public mutating func depart(_ member: Member) {
        guard let entry = entries.removeValue(forKey: member) else { return }
        for (field, value) in entry.counted { departed.add(value, for: field, guest: entry.guest) }
    }

    /// Members not in `present` have gone (`depart`); returns whether any had.
    @discardableResult
    public mutating func keepOnly(_ present: Set<Member>) -> Bool {
        let gone = entries.keys.filter { !present.contains($0) }
        for member in gone { depart(member) }
        return !gone.isEmpty
    }

    /// New baselines: nothing counted so far counts any more, nothing counts from zero;
    /// members `readNow` keep their last readings as the baseline, the others take theirs
    /// when next read.
    public mutating func reset(keepingLastOf readNow: (Member) -> Bool) {
        for member in Array(entries.keys) {
            entries[member]!.counted = entries[member]!.counted.mapValues { _ in 0 }
            entries[member]!.countsFromZero = false
            if !readNow(member) { entries[member]!.last.removeAll() }
        }
        departed.removeAll()
    }

    /// Forgets the departed entries of guests whose process has ended, but the one watched.
    public mutating func forgetEndedGuests(watching pid: Int, proc: String) {
        departed.forgetEnded(watching: pid, proc: proc)
    }

    /// Forgets `fields` of `member` (read no more): they take a new baseline when read again.
    public mutating func forget(_ fields: some Sequence<Field>, of member: Member) {
        for field in fields {
            entries[member]?.last[field] = nil
            entries[member]?.counted[field] = nil
        }
    }
}

/// What members that went away counted, in all and per guest (for `-p`). The entries of
/// guests whose process has ended are dropped (their counts stay in the total: such a pid can
/// no longer be watched, and a new process that gets it must not inherit them), so memory does
/// not grow with every guest a long-running host ever had.
public struct Departed<Field: Hashable & Sendable>: Sendable {
    public private(set) var all: [Field: UInt64] = [:]
    private var byGuest: [Int: [Field: UInt64]] = [:]

    public init() {}

    /// Per-guest entries kept (tests check it stays bounded).
    public var guestCount: Int { byGuest.count }

    public mutating func add(_ value: UInt64, for field: Field, guest: Int) {
        all[field, default: 0] &+= value
        byGuest[guest, default: [:]][field, default: 0] &+= value
    }

    /// Forgets the guests whose process has ended, but the one watched.
    public mutating func forgetEnded(watching pid: Int, proc: String) {
        for guest in byGuest.keys where guest != pid && !FileSystem.exists("\(proc)/\(guest)") {
            byGuest[guest] = nil
        }
    }

    /// What the guests in view counted before they went: all with pid 0.
    public func counts(watching pid: Int) -> [Field: UInt64] {
        pid == 0 ? all : byGuest[pid] ?? [:]
    }

    public mutating func removeAll() {
        all.removeAll()
        byGuest.removeAll()
    }
}
