import KVMCore

/// The histogram statistics of the qmp source's guests (`halt_wait_hist`, ...): their shapes
/// from `query-stats-schemas`, and each guest's latest buckets per vCPU. Histograms are
/// shown as the kernel keeps them (cumulative since the VM started, not since kvmstat's
/// baseline), summed over the guests in view and those that went away, and per vCPU as children
/// (`halt_wait_hist(vcpu0)`). They go to jsonl; the screen and the text formats leave them
/// out (a row of buckets has no single number to show).
///
/// The host's sums are kept as answers come (each answer adds what changed since its guest's
/// last), not summed again over every guest each sample: a big host has hundreds of guests ×
/// vCPUs × histograms of 32 buckets.
struct HistogramBook {
    private var shapes: [Int: [String: Histogram]] = [:]
    /// Per guest, its latest buckets (`GuestHistograms`).
    private var latest: [Int: GuestHistograms] = [:]
    /// By field, the sum of every guest's latest buckets, those of guests that went away
    /// included: host totals never go down (Prometheus would take a drop for a reset).
    /// Indexed by field number (fields are numbered densely, a few hundred on a host).
    private var sums: [Histogram?] = []

    /// A histogram's shape from its schema entry, nil for other statistics.
    static func shape(_ stat: JSONValue) -> Histogram? {
        let scale: Histogram.Scale
        switch stat["type"]?.stringValue {
        case "log2-histogram": scale = .log2
        case "linear-histogram":
            guard let size = stat["bucket-size"]?.uint64Value else { return nil }
            scale = .linear(bucketSize: size)
        default: return nil
        }
        // KVM's units are powers of 2 or 10 within ±30 (nanoseconds: 10^-9): anything else is
        // not a histogram kvmstat can scale, from a monitor that is not QEMU's.
        let base = stat["base"]?.intValue ?? 10
        let exponent = stat["exponent"]?.intValue ?? 0
        guard base == 2 || base == 10, (-30...30).contains(exponent) else { return nil }
        let unit = stat["unit"]?.stringValue
        guard unit.map(QMPSource.acceptable) ?? true else { return nil }
        return Histogram(scale: scale, unit: unit, base: base, exponent: exponent)
    }

    mutating func setShapes(_ guestShapes: [String: Histogram], of pid: Int) {
        shapes[pid] = guestShapes
        // Which statistics have a shape is decided anew.
        latest[pid]?.shapesChecked = false
    }

    /// KVM's histograms have 32 or 64 buckets; a monitor sending more is not believed.
    static let maxBuckets = 256

    /// One histogram of a guest's answer: its field (of a vCPU, or of the VM; numbered by
    /// the guest book), its statistic's number, and where its buckets are in the answer's.
    struct Reading {
        var field: Int32
        var statistic: Int32
        var buckets: Range<Int>
    }

    /// A guest's histograms from one answer, kept in place: the same guest's histogram every
    /// sample is no new array. The answer's histograms come in the same order every sample, so
    /// the slot at each position is checked, not looked up, and whether a statistic has a
    /// shape is looked up when its slot is made (and when the guest's shapes change), not
    /// every sample.
    mutating func record(_ readings: [Reading], buckets: [UInt64], numbering: StatisticNumbering, of pid: Int) {
        guard !readings.isEmpty, let guestShapes = shapes[pid] else { return }
        var guest = latest.removeValue(forKey: pid) ?? GuestHistograms()
        defer {
            guest.settle()
            latest[pid] = guest
        }
        if !guest.shapesChecked {
            // The guest's shapes changed: every slot's looked up again (not only those of
            // this answer: one missing from it would keep the old decision for good).
            for slot in guest.fields.indices {
                decideShape(slot, of: &guest, statistic: numbering.fieldStatistic[Int(guest.fields[slot])], guestShapes, numbering)
            }
            guest.shapesChecked = true
        }
        buckets.withUnsafeBufferPointer { buckets in
            for (position, reading) in readings.enumerated() where reading.buckets.count <= Self.maxBuckets {
                let counts = UnsafeBufferPointer(rebasing: buckets[reading.buckets])
                var slot = guest.slot(at: position, field: reading.field)
                if slot == nil {
                    // New at this position: its slot found, or made with its shape looked up
                    // (a statistic with no shape has one too, no sum changed by it, so that
                    // the ones after it stay where they are).
                    slot = guest.slot(of: reading.field)
                    if slot == nil {
                        slot = guest.add(reading.field)
                        decideShape(slot!, of: &guest, statistic: reading.statistic, guestShapes, numbering)
                    }
                }
                guard let slot, guest.isShaped(slot) else { continue }
                let sum = Int(reading.field)
                // A sum shorter than a guest's (shapes that differ) is made long enough.
                if sums[sum]!.buckets.count < counts.count {
                    sums[sum]!.add(Array(repeating: 0, count: counts.count))
                }
                if !guest.replaceInPlace(slot, with: counts, sum: &sums[sum]!.buckets) {
                    sums[sum]!.subtract(guest.buckets(slot))
                    guest.replace(slot, with: counts)
                    sums[sum]!.add(guest.buckets(slot))
                }
            }
        }
    }

    /// Whether the statistic of `guest`'s `slot` has a shape in `guestShapes`, noted on the
    /// slot (its host sum made when it has).
    private mutating func decideShape(_ slot: Int, of guest: inout GuestHistograms, statistic: Int32,
                                      _ guestShapes: [String: Histogram], _ numbering: StatisticNumbering) {
        let shape = guestShapes[numbering.names[Int(statistic)]]
        if let shape { makeSum(guest.fields[slot], shape) }
        guest.setShaped(slot, shape != nil)
    }

    /// The host's sum of `field` (empty at first), and the field known as one shown.
    private mutating func makeSum(_ field: Int32, _ shape: Histogram) {
        let sum = Int(field)
        if sum >= sums.count { sums.append(contentsOf: repeatElement(nil, count: sum + 1 - sums.count)) }
        if sums[sum] == nil { sums[sum] = shape.emptied }
        if known.insert(field).inserted { names = nil }
    }

    /// A guest that went away: its last buckets stay in the sums.
    mutating func forget(_ pid: Int) {
        shapes[pid] = nil
        latest[pid] = nil
    }

    /// Every histogram field ever kept, and its names (statistics and per-vCPU children),
    /// made again only when a new one came.
    private var known: Set<Int32> = []
    private var names: [String]?

    mutating func names(_ numbering: StatisticNumbering) -> [String] {
        if let names { return names }
        var all = Set<String>()
        for field in known {
            let key = numbering.keys[Int(field)]
            all.insert(key.name)
            all.insert(key.parent ?? key.name)
        }
        let sorted = all.sorted()
        names = sorted
        return sorted
    }

    /// Sums over the guests in view (all with `pid` 0, those that went away included) of the
    /// statistics `wanted` names (parents and children): by field number first, keys and names
    /// looked at once a field, not once a guest.
    func totals(wanted: Set<String>, pid: Int, numbering: StatisticNumbering) -> [EventID: Histogram] {
        var results: [EventID: Histogram] = [:]
        guard !wanted.isEmpty else { return results }
        var byField: [Int32: Histogram] = [:]
        if pid == 0 {
            for (field, sum) in sums.enumerated() { if let sum { byField[Int32(field)] = sum } }
        } else if let histograms = latest[pid], let guestShapes = shapes[pid] {
            for slot in histograms.fields.indices where histograms.isShaped(slot) {
                let field = histograms.fields[slot], buckets = histograms.buckets(slot)
                let key = numbering.keys[Int(field)]
                guard let shape = guestShapes[key.parent ?? key.name] else { continue }
                byField[field, default: shape.emptied].add(buckets)
            }
        }
        for (field, histogram) in byField {
            let key = numbering.keys[Int(field)]
            if wanted.contains(key.name) { results[key, default: histogram.emptied].add(histogram.buckets) }
            if let parent = key.parent, wanted.contains(parent) {
                results[EventID(parent), default: histogram.emptied].add(histogram.buckets)
            }
        }
        return results
    }
}

/// One guest's latest buckets in a `HistogramBook`, all in one flat array: per slot (a
/// histogram field it reported, numbered as its answers give them: the slot of the one at
/// position *i* is *i* while they come in the same order), the field and where its buckets
/// are. No array and no map per histogram: 24 a guest of 8 vCPUs, 500 guests.
private struct GuestHistograms {
    private(set) var fields: [Int32] = []
    /// Per slot: where its buckets start in `store`, how many, whether they are wide, and
    /// whether its statistic has a shape (one without changes no sum: its last buckets, in
    /// the sums, stay kept, so that a shape given back takes up from them).
    private var starts: [Int32] = []
    private var lengths: [Int32] = []
    private var wide: [Bool] = []
    private var shaped: [Bool] = []
    /// The buckets, 32 bits each while a histogram's all fit (KVM's are counts of halts: a
    /// 500-guest host keeps 385,000 of them, half the memory), two words each (low, high)
    /// once one does not.
    private var store: [UInt32] = []
    /// Words in `store` no slot uses any more (histograms whose length or width changed).
    private var unused = 0
    /// A slot map, made only when a field is looked up by number (a position that changed),
    /// and let go after the answer (`settle`).
    private var slotOfField: [Int32: Int]?
    /// Whether each slot's shape was looked up since the guest's shapes last changed.
    var shapesChecked = true

    /// The slot at `position`, when it is `field`'s (else nil: look it up).
    func slot(at position: Int, field: Int32) -> Int? {
        position < fields.count && fields[position] == field ? position : nil
    }

    mutating func slot(of field: Int32) -> Int? {
        if slotOfField == nil {
            slotOfField = Dictionary(fields.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        }
        return slotOfField![field]
    }

    /// A new slot for `field`, its buckets none yet.
    mutating func add(_ field: Int32) -> Int {
        fields.append(field)
        starts.append(Int32(store.count))
        lengths.append(0)
        wide.append(false)
        shaped.append(true)
        slotOfField?[field] = fields.count - 1
        return fields.count - 1
    }

    func isShaped(_ slot: Int) -> Bool { shaped[slot] }

    mutating func setShaped(_ slot: Int, _ isShaped: Bool) { shaped[slot] = isShaped }

    func buckets(_ slot: Int) -> [UInt64] {
        let start = Int(starts[slot])
        return (0..<Int(lengths[slot])).map { bucket in
            wide[slot] ? UInt64(store[start + 2 * bucket]) | UInt64(store[start + 2 * bucket + 1]) << 32
                : UInt64(store[start + bucket])
        }
    }

    private func words(_ slot: Int) -> Int { Int(lengths[slot]) * (wide[slot] ? 2 : 1) }

    /// Replaces a slot's buckets by `counts` where they are, changing `sum` by what changed;
    /// false when their length differs, or they no longer fit in 32 bits (nothing done).
    mutating func replaceInPlace(_ slot: Int, with counts: UnsafeBufferPointer<UInt64>, sum: inout [UInt64]) -> Bool {
        guard Int(lengths[slot]) == counts.count else { return false }
        let start = Int(starts[slot])
        if wide[slot] {
            store.withUnsafeMutableBufferPointer { store in
                sum.withUnsafeMutableBufferPointer { total in
                    for bucket in 0..<counts.count {
                        let old = UInt64(store[start + 2 * bucket]) | UInt64(store[start + 2 * bucket + 1]) << 32
                        total[bucket] = total[bucket] &- old &+ counts[bucket]
                        store[start + 2 * bucket] = UInt32(truncatingIfNeeded: counts[bucket])
                        store[start + 2 * bucket + 1] = UInt32(truncatingIfNeeded: counts[bucket] >> 32)
                    }
                }
            }
            return true
        }
        guard counts.allSatisfy({ $0 <= UInt32.max }) else { return false }
        store.withUnsafeMutableBufferPointer { store in
            sum.withUnsafeMutableBufferPointer { total in
                for bucket in 0..<counts.count {
                    total[bucket] = total[bucket] &- UInt64(store[start + bucket]) &+ counts[bucket]
                    store[start + bucket] = UInt32(truncatingIfNeeded: counts[bucket])
                }
            }
        }
        return true
    }

    /// Gives a slot `counts` of another length or width: at the end of the store, which is
    /// made compact again once most of it is unused (a monitor changing lengths every answer
    /// cannot grow it).
    mutating func replace(_ slot: Int, with counts: UnsafeBufferPointer<UInt64>) {
        unused += words(slot)
        starts[slot] = Int32(store.count)
        lengths[slot] = Int32(counts.count)
        wide[slot] = !counts.allSatisfy { $0 <= UInt32.max }
        for count in counts {
            store.append(UInt32(truncatingIfNeeded: count))
            if wide[slot] { store.append(UInt32(truncatingIfNeeded: count >> 32)) }
        }
        if unused > store.count / 2 {
            var compact: [UInt32] = []
            compact.reserveCapacity(store.count - unused)
            for other in fields.indices {
                let start = Int(starts[other])
                starts[other] = Int32(compact.count)
                compact.append(contentsOf: store[start..<start + words(other)])
            }
            store = compact
            unused = 0
        }
    }

    mutating func settle() { slotOfField = nil }
}

private extension Histogram {
    /// The same shape without counts.
    var emptied: Histogram { Histogram(scale: scale, unit: unit, base: base, exponent: exponent) }

    /// Takes another's buckets out again (wrapping, as `add` puts them in).
    mutating func subtract(_ other: [UInt64]) {
        for (index, count) in other.enumerated() where index < buckets.count { buckets[index] &-= count }
    }
}
