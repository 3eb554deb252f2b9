import KVMCore

/// `-1 --latency`: perf kvm stat's report of exit latencies, per latency and reason — events,
/// their share, the share of the time, then min, p50, p90, p99, max and mean in microseconds.
/// Percentiles come from the kernel's log2 buckets (interpolated within a bucket, kept within
/// the exact minimum and maximum); min, max and mean are exact.
enum LatencyReport {
    /// One latency and reason: its events and the figures shown of it (times in ns).
    struct Row {
        var key: EventID
        var histogram: Histogram
        var count: UInt64 { histogram.count }
        var sum: UInt64 { histogram.sum ?? 0 }
        var minimum: Double? { histogram.minimum.map { Double($0) } }
        var maximum: Double? { histogram.maximum.map { Double($0) } }
        var mean: Double? { count > 0 ? Double(sum) / Double(count) : nil }
        func quantile(_ q: Double) -> Double? { LatencyReport.quantile(q, histogram) }
    }

    /// The latencies kvmstat timed (histograms with an exact sum: KVM's own keep none), by
    /// family, each family's rows by events, most first.
    struct Family {
        var name: String
        var help: String?
        var rows: [Row]
        var events: UInt64 { rows.reduce(0) { $0 &+ $1.count } }
        var time: UInt64 { rows.reduce(0) { $0 &+ $1.sum } }
    }

    static func families(_ sample: Sample) -> [Family] {
        var byFamily: [String: [Row]] = [:]
        for (key, histogram) in sample.histograms where histogram.count > 0 && histogram.sum != nil && key.guest == nil {
            byFamily[key.parent ?? key.name, default: []].append(Row(key: key, histogram: histogram))
        }
        return byFamily.keys.sorted().map { name in
            let rows = byFamily[name]!.sorted { ($0.count, $1.key.name) > ($1.count, $0.key.name) }
            return Family(name: name, help: sample.family(of: rows[0].key)?.help, rows: rows)
        }
    }

    static let nothingTimed = "No exit latencies were timed: no guest made an exit that kvmstat times on this host "
        + "(--arch-info lists them)."

    static func render(_ sample: Sample) -> String {
        let families = families(sample)
        guard !families.isEmpty else { return nothingTimed + "\n" }
        var out = ""
        for family in families {
            if !out.isEmpty { out += "\n" }
            out += family.name + (family.help.map { ": " + $0 } ?? "") + "\n"
            out += "Event".padded(to: 40) + ["Samples", "Samples%", "Time%", "Min", "p50", "p90", "p99", "Max", "Mean"]
                .map { $0.rightAligned(to: 10) }.joined() + "\n"
            for row in family.rows {
                var columns = [String(row.count), percent(row.count, of: family.events), percent(row.sum, of: family.time)]
                columns += [row.minimum, row.quantile(0.5), row.quantile(0.9), row.quantile(0.99), row.maximum, row.mean]
                    .map(microseconds)
                out += row.key.name.escapedForDisplay.padded(to: 40) + columns.map { $0.rightAligned(to: 10) }.joined() + "\n"
            }
            out += "Total".padded(to: 40) + String(family.events).rightAligned(to: 10) + "\n"
        }
        out += "(times in microseconds; percentiles from log2 buckets)\n"
        return out
    }

    static func percent(_ part: UInt64, of whole: UInt64) -> String {
        whole == 0 ? "-" : ScreenModel.cFormat("%.2f%%", Double(part) / Double(whole) * 100)
    }

    static func microseconds(_ nanoseconds: Double?) -> String {
        guard let nanoseconds else { return "-" }
        return ScreenModel.cFormat("%.2f", nanoseconds / 1000)
    }

    /// The `q` quantile in nanoseconds: the bucket where the count reaches q of all, and a
    /// linear guess within it ([2^(i-1), 2^i) ns), kept between the exact extremes.
    static func quantile(_ q: Double, _ histogram: Histogram) -> Double? {
        let count = histogram.count
        guard count > 0 else { return nil }
        let rank = q * Double(count)
        var below: UInt64 = 0
        for (index, bucket) in histogram.buckets.enumerated() where bucket > 0 {
            if Double(below &+ bucket) >= rank {
                let lower = index == 0 ? 0 : pow2(index - 1)
                let upper = index == 0 ? 0 : pow2(index)
                let value = lower + (upper - lower) * (rank - Double(below)) / Double(bucket)
                let floor = histogram.minimum.map { Double($0) } ?? 0
                let ceiling = histogram.maximum.map { Double($0) } ?? .infinity
                return min(max(value, floor), ceiling)
            }
            below &+= bucket
        }
        return histogram.maximum.map { Double($0) }
    }

    private static func pow2(_ exponent: Int) -> Double {
        var value = 1.0
        for _ in 0..<min(exponent, 64) { value *= 2 }
        return value
    }
}
