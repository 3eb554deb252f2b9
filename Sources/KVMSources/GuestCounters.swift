import KVMCore

/// A statistic of a guest, by number (`StatisticNumbering`), as its reader found it: a VM's
/// value (`vcpu` -1) or one vCPU's.
public struct NumberedReading: Sendable {
    public var statistic: Int32
    public var vcpu: Int32
    public var value: UInt64

    public init(statistic: Int32, vcpu: Int32, value: UInt64) {
        self.statistic = statistic
        self.vcpu = vcpu
        self.value = value
    }
}

/// One guest's tables in a `GuestStatBook`: per *slot* (a field it reported), the field's
/// number, the last reading and what it counted since the baseline — flat arrays, a few bytes
/// a value, changed in place every sample (no per-sample allocation, no hashing).
///
/// Readers report a guest's values in the same order every time (QEMU walks its statistics'
/// descriptors, libvirt its typed parameters), so the slot of the value at position *i* is
/// remembered (`positions`) and only checked; a value whose position changed is found by its
/// field number (a map made only then).
struct GuestCounters: Sendable {
    var name: String
    /// Whether a field's first reading is counted whole (see `CounterBook.Entry`).
    var countsFromZero: Bool
    var kinds: [String: StatKind]
    /// `kinds` by statistic number (`Kind`), for every statistic numbered when last made.
    private(set) var kindByStatistic: [Kind] = []

    private(set) var slotField: [Int32] = []
    private(set) var last: [UInt64] = []
    private(set) var counted: [UInt64] = []
    /// Whether the slot has a reading since its baseline (a reset forgets the others').
    private(set) var read: [Bool] = []
    /// The slot of the value at each position; empty while every value's slot is its
    /// position (QEMU's answers, which have no gaps: 4 bytes a value saved on a big host).
    private var positions: [Int32] = []

    enum Kind: UInt8, Sendable {
        case unknown, counter, level, histogram
    }

    init(name: String, countsFromZero: Bool, kinds: [String: StatKind] = [:]) {
        self.name = name
        self.countsFromZero = countsFromZero
        self.kinds = kinds
    }

    var slotCount: Int { slotField.count }

    /// The kinds of statistics numbered since they were last looked at; all again when
    /// `kinds` changed.
    mutating func learnKinds(_ numbering: StatisticNumbering, again: Bool = false) {
        if again { kindByStatistic.removeAll(keepingCapacity: true) }
        while kindByStatistic.count < numbering.statisticCount {
            switch kinds[numbering.names[kindByStatistic.count]] {
            case .counter: kindByStatistic.append(.counter)
            case .level: kindByStatistic.append(.level)
            case .histogram: kindByStatistic.append(.histogram)
            case nil: kindByStatistic.append(.unknown)
            }
        }
    }

    func kind(ofField field: Int32, _ numbering: StatisticNumbering) -> Kind {
        let statistic = Int(numbering.fieldStatistic[Int(field)])
        return statistic < kindByStatistic.count ? kindByStatistic[statistic] : .unknown
    }

    /// What a reading did to its counter.
    enum Step {
        case kept, counted, wentBackwards
    }

    /// Takes `readings` (in the reader's order); `newSlot` is told of each field this guest
    /// reports for the first time. Returns the fields of counters that went backwards (the kernel's
    /// counter was reset: the new value is what it counted).
    mutating func record(_ readings: [NumberedReading], numbering: inout StatisticNumbering,
                         newSlot: (Int32) -> Void) -> [Int32] {
        learnKinds(numbering)
        if !positions.isEmpty, positions.count < readings.count {
            positions.append(contentsOf: repeatElement(-1, count: readings.count - positions.count))
        }
        var slotOfField: [Int32: Int32]?
        var wentBack: [Int32] = []
        var position = 0
        while position < readings.count {
            // Readings where they were last time are counted in one run over the tables (the
            // steady state: hundreds a guest every sample); one that moved or is new is placed
            // in between.
            position = countInPlace(readings, from: position, numbering, &wentBack)
            guard position < readings.count else { break }
            let reading = readings[position]
            defer { position += 1 }
            // New here: numbered (within the bounds) if its kind is one kept.
            guard Int(reading.statistic) < kindByStatistic.count,
                  kindByStatistic[Int(reading.statistic)] == .counter || kindByStatistic[Int(reading.statistic)] == .level
            else {
                place(-1, at: position, readings.count)
                continue
            }
            guard let field = numbering.field(reading.statistic, vcpu: reading.vcpu) else {
                place(-1, at: position, readings.count)
                continue
            }
            if slotOfField == nil {
                slotOfField = Dictionary(uniqueKeysWithValues: slotField.enumerated().map { ($1, Int32($0)) })
            }
            let slot: Int32
            if let existing = slotOfField![field] {
                slot = existing
            } else {
                slot = Int32(slotField.count)
                slotField.append(field)
                last.append(0)
                counted.append(0)
                read.append(false)
                slotOfField![field] = slot
                newSlot(field)
            }
            place(slot, at: position, readings.count)
            count(reading, Int(slot), &wentBack)
        }
        return wentBack
    }

    /// Notes `slot` as the slot of the value at `position` (of `count`); the positions are
    /// written out once a slot is not its position.
    private mutating func place(_ slot: Int32, at position: Int, _ count: Int) {
        if positions.isEmpty {
            guard Int(slot) != position else { return }
            positions = (0..<Int32(Swift.max(count, slotField.count))).map { $0 }
        }
        positions[position] = slot
    }

    /// Counts the readings from `start` on whose slot is the one their position had, up to
    /// the first that is not (returned; `readings.count` when all were).
    private mutating func countInPlace(_ readings: [NumberedReading], from start: Int, _ numbering: StatisticNumbering,
                                       _ wentBack: inout [Int32]) -> Int {
        var position = start
        let positions = positions, slotField = slotField, kinds = kindByStatistic, countsFromZero = countsFromZero
        withTables { last, counted, read in
            while position < readings.count {
                let reading = readings[position]
                let slot = positions.isEmpty ? position : Int(positions[position])
                guard slot >= 0, slot < slotField.count else { return }
                let field = Int(slotField[slot])
                guard numbering.fieldStatistic[field] == reading.statistic, numbering.fieldVCPU[field] == reading.vcpu
                else { return }
                if Self.count(reading.value, kind: kinds[Int(reading.statistic)], at: slot, countsFromZero: countsFromZero,
                              last: last, counted: counted, read: read) {
                    wentBack.append(slotField[slot])
                }
                position += 1
            }
        }
        return position
    }

    /// Counts one reading into its slot.
    private mutating func count(_ reading: NumberedReading, _ slot: Int, _ wentBack: inout [Int32]) {
        let kind = kindByStatistic[Int(reading.statistic)], countsFromZero = countsFromZero
        let wentBackward = withTables { last, counted, read in
            Self.count(reading.value, kind: kind, at: slot, countsFromZero: countsFromZero, last: last, counted: counted, read: read)
        }
        if wentBackward { wentBack.append(slotField[slot]) }
    }

    /// The tables a reading changes, as buffers (changed in place, hundreds a guest every
    /// sample, with no uniqueness check for each).
    private mutating func withTables<Result>(
        _ body: (UnsafeMutableBufferPointer<UInt64>, UnsafeMutableBufferPointer<UInt64>, UnsafeMutableBufferPointer<Bool>) -> Result
    ) -> Result {
        last.withUnsafeMutableBufferPointer { last in
            counted.withUnsafeMutableBufferPointer { counted in
                read.withUnsafeMutableBufferPointer { read in body(last, counted, read) }
            }
        }
    }

    /// The counting rule for one value in its slot (`CounterBook`'s): a counter's first
    /// reading counts whole only for a guest that counts from zero, one below the last was
    /// reset and counted the new value (true is returned: it went backwards); a level is
    /// kept as it is.
    @inline(__always)
    private static func count(_ value: UInt64, kind: Kind, at slot: Int, countsFromZero: Bool,
                              last: UnsafeMutableBufferPointer<UInt64>, counted: UnsafeMutableBufferPointer<UInt64>,
                              read: UnsafeMutableBufferPointer<Bool>) -> Bool {
        var wentBackward = false
        switch kind {
        case .counter:
            if !read[slot] {
                read[slot] = true
                counted[slot] = countsFromZero ? value : 0
            } else if value >= last[slot] {
                counted[slot] &+= value - last[slot]
            } else {
                counted[slot] &+= value
                wentBackward = true
            }
            last[slot] = value
        case .level:
            read[slot] = true
            last[slot] = value
        case .unknown, .histogram:
            break
        }
        return wentBackward
    }

    /// New baselines: nothing counted so far counts any more, nothing counts from zero; the
    /// last readings stay the baseline when `keepLast`, else the next ones are.
    mutating func reset(keepLast: Bool) {
        for index in counted.indices { counted[index] = 0 }
        countsFromZero = false
        if !keepLast { for index in read.indices { read[index] = false } }
    }
}
