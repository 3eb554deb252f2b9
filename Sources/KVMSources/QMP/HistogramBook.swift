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
        latest[pid]?.forgetPositions()
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
    /// shape is looked up when its position is new, not every sample.
    mutating func record(_ readings: [Reading], buckets: [UInt64], numbering: StatisticNumbering, of pid: Int) {
        guard !readings.isEmpty, let guestShapes = shapes[pid] else { return }
        var guest = latest.removeValue(forKey: pid) ?? GuestHistograms()
        defer {
            guest.settle()
            latest[pid] = guest
        }
        buckets.withUnsafeBufferPointer { buckets in
            for (position, reading) in readings.enumerated() where reading.buckets.count <= Self.maxBuckets {
                let counts = UnsafeBufferPointer(rebasing: buckets[reading.buckets])
                var slot = guest.slot(at: position, field: reading.field)
                if slot == nil {
                    // New at this position: its shape looked up, its slot found or made.
                    guard let shape = guestShapes[numbering.names[Int(reading.statistic)]] else {
                        guest.note(position: position, field: reading.field, slot: GuestHistograms.unshaped)
                        continue
                    }
                    let sum = Int(reading.field)
                    if sum >= sums.count { sums.append(contentsOf: repeatElement(nil, count: sum + 1 - sums.count)) }
                    if sums[sum] == nil { sums[sum] = shape.emptied }
                    let found = guest.slot(of: reading.field)
                    if found == nil, known.insert(reading.field).inserted { names = nil }
                    slot = found ?? guest.add(reading.field)
                    guest.note(position: position, field: reading.field, slot: slot!)
                }
                guard let slot, slot != GuestHistograms.unshaped else { continue }
                let sum = Int(reading.field)
                // A sum shorter than a guest's (shapes that differ) is made long enough.
                if sums[sum]!.buckets.count < counts.count {
                    sums[sum]!.add(Array(repeating: 0, count: counts.count))
                }
                if guest.counts[slot].count == counts.count {
                    // Changed where they are (no copy of an array, no hashing).
                    guest.counts[slot].withUnsafeMutableBufferPointer { kept in
                        sums[sum]!.buckets.withUnsafeMutableBufferPointer { total in
                            for bucket in kept.indices {
                                total[bucket] = total[bucket] &- kept[bucket] &+ counts[bucket]
                                kept[bucket] = counts[bucket]
                            }
                        }
                    }
                } else {
                    sums[sum]!.subtract(guest.counts[slot])
                    guest.counts[slot] = Array(counts)
                    sums[sum]!.add(guest.counts[slot])
                }
            }
        }
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
            for (field, buckets) in zip(histograms.fields, histograms.counts) {
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

/// One guest's latest buckets in a `HistogramBook`: per slot (a histogram field it reported),
/// the field and its buckets; and per position in its answers, the field found there and its
/// slot (`unshaped`: a statistic its schema has no shape for, not kept).
private struct GuestHistograms {
    private(set) var fields: [Int32] = []
    var counts: [[UInt64]] = []
    private var positionField: [Int32] = []
    private var positionSlot: [Int] = []
    /// A slot map, made only when a field is looked up by number (a position that changed),
    /// and let go after the answer (`settle`): kept, it was a kilobyte and more a guest.
    private var slotOfField: [Int32: Int]?

    static let unshaped = -1

    /// The slot noted at `position`, when it is `field`'s (else nil: look it up).
    func slot(at position: Int, field: Int32) -> Int? {
        position < positionField.count && positionField[position] == field ? positionSlot[position] : nil
    }

    mutating func note(position: Int, field: Int32, slot: Int) {
        if positionField.count <= position {
            positionField.append(contentsOf: repeatElement(-1, count: position + 1 - positionField.count))
            positionSlot.append(contentsOf: repeatElement(Self.unshaped, count: position + 1 - positionSlot.count))
        }
        positionField[position] = field
        positionSlot[position] = slot
    }

    mutating func slot(of field: Int32) -> Int? {
        if slotOfField == nil { slotOfField = Dictionary(uniqueKeysWithValues: fields.enumerated().map { ($1, $0) }) }
        return slotOfField![field]
    }

    /// A new slot for `field`, its buckets empty (filled by the caller).
    mutating func add(_ field: Int32) -> Int {
        fields.append(field)
        counts.append([])
        slotOfField?[field] = fields.count - 1
        return fields.count - 1
    }

    mutating func settle() { slotOfField = nil }

    /// Positions are looked at anew (the guest's shapes changed).
    mutating func forgetPositions() {
        positionField.removeAll()
        positionSlot.removeAll()
    }
}

private extension Histogram {
    /// The same shape without counts.
    var emptied: Histogram { Histogram(scale: scale, unit: unit, base: base, exponent: exponent) }

    /// Takes another's buckets out again (wrapping, as `add` puts them in).
    mutating func subtract(_ other: [UInt64]) {
        for (index, count) in other.enumerated() where index < buckets.count { buckets[index] &-= count }
    }
}
