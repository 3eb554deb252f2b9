import KVMCore

/// `-1 --latency`: perf kvm stat's report of exit latencies, per latency and reason — events,
/// their share, the share of the time, then min, p50, p90, p99, max and mean in microseconds.
/// Percentiles come from the kernel's log2 buckets (interpolated within a bucket, kept within
/// the exact minimum and maximum); min, max and mean are exact.
enum LatencyReport {
    static func render(_ sample: Sample) -> String {
        var byFamily: [String: [(EventID, Histogram)]] = [:]
        for (key, histogram) in sample.histograms where histogram.count > 0 {
            byFamily[key.parent ?? key.name, default: []].append((key, histogram))
        }
        guard !byFamily.isEmpty else {
            return "No exit latencies were timed: no guest made an exit that kvmstat times on this host "
                + "(--arch-info lists them).\n"
        }
        var out = ""
        for family in byFamily.keys.sorted() {
            let rows = byFamily[family]!.sorted { ($0.1.count, $1.0.name) > ($1.1.count, $0.0.name) }
            let events = rows.reduce(UInt64(0)) { $0 &+ $1.1.count }
            let time = rows.reduce(UInt64(0)) { $0 &+ ($1.1.sum ?? 0) }
            if !out.isEmpty { out += "\n" }
            out += family + (sample.family(of: rows[0].0).map { ": " + $0.help } ?? "") + "\n"
            out += "Event".padded(to: 40) + ["Samples", "Samples%", "Time%", "Min", "p50", "p90", "p99", "Max", "Mean"]
                .map { $0.rightAligned(to: 10) }.joined() + "\n"
            for (key, histogram) in rows {
                let count = histogram.count
                let sum = histogram.sum ?? 0
                var columns = [String(count), percent(count, of: events), percent(sum, of: time)]
                columns += [histogram.minimum.map { Double($0) }, quantile(0.5, histogram), quantile(0.9, histogram),
                            quantile(0.99, histogram), histogram.maximum.map { Double($0) },
                            count > 0 ? Double(sum) / Double(count) : nil].map(microseconds)
                out += key.name.escapedForDisplay.padded(to: 40) + columns.map { $0.rightAligned(to: 10) }.joined() + "\n"
            }
            out += "Total".padded(to: 40) + String(events).rightAligned(to: 10) + "\n"
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
