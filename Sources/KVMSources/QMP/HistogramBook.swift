import KVMCore

/// The histogram statistics of the qmp source's guests (`halt_wait_hist`, ...): their shapes
/// from `query-stats-schemas`, and each guest's latest buckets per vCPU. Histograms are
/// shown as the kernel keeps them (cumulative since the VM started, not since kvmstat's
/// baseline), summed over the guests in view and those that went away, and per vCPU as children
/// (`halt_wait_hist(vcpu0)`). They go to jsonl; the screen and the text formats leave them
/// out (a row of buckets has no single number to show).
struct HistogramBook {
    private var shapes: [Int: [String: Histogram]] = [:]
    private var latest: [Int: [EventID: [UInt64]]] = [:]
    /// What guests that went away had, added up: host totals never go down (Prometheus would
    /// take a drop for a reset).
    private var departed: [EventID: Histogram] = [:]

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

    mutating func setShapes(_ guestShapes: [String: Histogram], of pid: Int) { shapes[pid] = guestShapes }

    /// KVM's histograms have 32 or 64 buckets; a monitor sending more is not believed.
    static let maxBuckets = 256

    /// A guest's buckets of one statistic (of a vCPU, or of the VM).
    mutating func record(_ name: String, vcpu: Int?, buckets: [JSONValue], of pid: Int) {
        guard shapes[pid]?[name] != nil, buckets.count <= Self.maxBuckets else { return }
        let counts = buckets.compactMap(\.uint64Value)
        guard counts.count == buckets.count else { return }
        let key = vcpu.map { EventID("\(name)(vcpu\($0))", parent: name, vcpu: $0) } ?? EventID(name)
        latest[pid, default: [:]][key] = counts
    }

    mutating func forget(_ pid: Int) {
        for (key, buckets) in latest[pid] ?? [:] {
            guard let shape = shapes[pid]?[key.parent ?? key.name] else { continue }
            departed[key, default: shape].add(buckets)
        }
        shapes[pid] = nil
        latest[pid] = nil
    }

    /// Every histogram statistic and per-vCPU child known.
    var names: [String] {
        Set(latest.values.flatMap { $0.keys.map(\.name) }).union(shapes.values.flatMap(\.keys)).sorted()
    }

    /// Sums over the guests in view of the statistics `wanted` names (parents and children).
    func totals(wanted: Set<String>, pid: Int) -> [EventID: Histogram] {
        var results: [EventID: Histogram] = [:]
        if pid == 0 {
            for (key, histogram) in departed {
                for target in [key, key.parent.map { EventID($0) }].compactMap({ $0 }) where wanted.contains(target.name) {
                    results[target, default: Histogram(scale: histogram.scale, unit: histogram.unit, base: histogram.base,
                                                       exponent: histogram.exponent)].add(histogram.buckets)
                }
            }
        }
        for (guestPid, histograms) in latest where pid == 0 || guestPid == pid {
            for (key, buckets) in histograms {
                let name = key.parent ?? key.name
                guard let shape = shapes[guestPid]?[name] else { continue }
                for target in [key, key.parent.map { EventID($0) }].compactMap({ $0 }) where wanted.contains(target.name) {
                    results[target, default: shape].add(buckets)
                }
            }
        }
        return results
    }
}
