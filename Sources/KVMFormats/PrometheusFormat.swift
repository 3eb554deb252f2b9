import KVMCore

/// Prometheus's text exposition format 0.0.4 (or OpenMetrics 1.0 with `openMetrics`), for
/// node_exporter's textfile collector (`-L FILE.prom`, each sample replacing the file) and the
/// `--listen` endpoint. Every record is a whole exposition.
///
/// Naming (README, "Prometheus"): tracepoints are `kvm_tracepoint_total{tracepoint=...}` and
/// their exit reasons `kvm_tracepoint_reason_total{tracepoint=...,reason=...}`; KVM's own
/// statistics (debugfs, qmp, libvirt) are one family each, `kvm_<stat>_total` for counters and
/// `kvm_<stat>` for levels (gauges), with a `vcpu` label where the source has per-vCPU values
/// (then only those are exported, so `sum()` counts each event once). Totals count since
/// kvmstat started and never go down within one kvmstat process.
public struct PrometheusFormat: Format {
    public let openMetrics: Bool

    public init(openMetrics: Bool = false) { self.openMetrics = openMetrics }

    public var name: String { openMetrics ? "openmetrics" : "prometheus" }
    public var repeatsBannerInFile: Bool { false }
    public var replacesFile: Bool { true }
    public var recordsStandAlone: Bool { true }
    public var wantsGuestEvents: Bool { true }

    /// The HTTP Content-Type of an exposition.
    public var contentType: String {
        openMetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
            : "text/plain; version=0.0.4; charset=utf-8"
    }

    public func banner(keys: [EventID]) -> String? { nil }

    public func batch(_ sample: Sample) -> String { exposition(sample, keys: sample.sortedKeys) }

    /// The whole exposition without its last line break (log mode adds it).
    public func record(_ sample: Sample, keys: [EventID]) -> String {
        String(exposition(sample, keys: keys).dropLast())
    }

    /// One series: its labels (name, value) and number.
    struct Series {
        var labels: [(String, String)]
        var value: String
    }

    struct Family {
        var name: String
        var isCounter: Bool
        var help: String
        var series: [Series] = []
    }

    public func exposition(_ sample: Sample, keys: [EventID]) -> String {
        var families: [String: Family] = [:]
        func add(_ family: String, counter: Bool, help: String, _ labels: [(String, String)], _ value: UInt64,
                 nanoseconds: Bool = false) {
            // Prometheus wants base units: nanosecond statistics are exported in seconds.
            let text = nanoseconds ? Self.seconds(fromNanoseconds: value) : String(value)
            families[family, default: Family(name: family, isCounter: counter, help: help)]
                .series.append(Series(labels: labels, value: text))
        }
        // The host's totals (`kvm_…`), then each guest's (`kvm_guest_…`, labelled by guest):
        // separate families, so that no sum() counts an event twice.
        let guestKeys = sample.guestEvents.keys.sorted()
        for (keyList, perGuest) in [(keys.filter { !$0.isGuestTotal }, false), (guestKeys, true)] {
            // Statistics that have per-vCPU rows (per guest): the vCPUs' series stand for them.
            let perVCPU = Set(keyList.compactMap { $0.vcpu != nil ? "\($0.guest ?? 0) \($0.parent ?? "")" : nil })
            for key in keyList {
                let value = perGuest ? sample.guestEvents[key] ?? 0 : sample.values[key]?.value ?? 0
                let prefix = perGuest ? "kvm_guest_" : "kvm_"
                let guestLabels = perGuest ? [("guest", sample.guestNames[key.guest!] ?? ""), ("pid", String(key.guest!))] : []
                let whose = perGuest ? " per guest" : ""
                if key.name.hasPrefix("kvm_") || key.parent?.hasPrefix("kvm_") == true {
                    if let parent = key.parent {
                        let reason = String(key.name.dropFirst(parent.count + 1).dropLast())
                        add(prefix + "tracepoint_reason", counter: true,
                            help: "KVM tracepoint events by exit reason (child events such as kvm_exit(HLT))" + whose,
                            guestLabels + [("tracepoint", parent), ("reason", reason)], value)
                    } else {
                        add(prefix + "tracepoint", counter: true, help: "KVM tracepoint events counted by perf" + whose,
                            guestLabels + [("tracepoint", key.name)], value)
                    }
                    continue
                }
                let statistic = key.vcpu != nil ? key.parent ?? key.name : key.name
                if key.vcpu == nil && perVCPU.contains("\(key.guest ?? 0) \(statistic)") { continue }
                let level = sample.levels.contains(statistic)
                let nanoseconds = statistic.hasSuffix("_ns")
                let family = prefix + Self.metricName(nanoseconds ? String(statistic.dropLast(3)) + "_seconds" : statistic)
                let labels = guestLabels + (key.vcpu.map { [("vcpu", String($0))] } ?? [])
                add(family, counter: !level,
                    help: "KVM statistic \(statistic)\(whose) (" + (level ? "current value" : "since kvmstat started")
                        + (nanoseconds ? ", in seconds" : "") + ")",
                    labels, value, nanoseconds: nanoseconds)
            }
        }
        var out = ""
        out += histogramFamilies(sample)
        for family in families.values.sorted(by: { $0.name < $1.name }) {
            let typeName = openMetrics || !family.isCounter ? family.name : family.name + "_total"
            out += "# HELP \(typeName) \(Self.escapeHelp(family.help))\n"
            out += "# TYPE \(typeName) \(family.isCounter ? "counter" : "gauge")\n"
            let sampleName = family.isCounter ? family.name + "_total" : family.name
            for series in family.series.sorted(by: { Self.labelText($0.labels) < Self.labelText($1.labels) }) {
                out += sampleName + Self.labelText(series.labels) + " " + String(series.value) + "\n"
            }
        }
        if openMetrics { out += "# EOF\n" }
        return out
    }

    /// KVM's histograms (qmp: `halt_wait_hist`) as Prometheus histograms: `kvm_halt_wait_seconds`
    /// with cumulative `le` buckets in base units, per vCPU where the source has them, and a
    /// `_count` in the text format; KVM keeps no sum, so there is no `_sum` (promtool accepts
    /// that; OpenMetrics then wants no `_count` either).
    func histogramFamilies(_ sample: Sample) -> String {
        let perVCPU = Set(sample.histograms.keys.compactMap { $0.vcpu != nil ? $0.parent : nil })
        var byFamily: [String: [(EventID, Histogram)]] = [:]
        for (key, histogram) in sample.histograms {
            let statistic = key.parent ?? key.name
            if key.vcpu == nil && perVCPU.contains(statistic) { continue }
            // `halt_wait_hist` → `kvm_halt_wait_hist_seconds` (not `kvm_halt_wait_seconds`: that
            // is the `halt_wait_ns` counter's family in OpenMetrics).
            let name = "kvm_" + Self.metricName(statistic) + (histogram.unit == "seconds" ? "_seconds" : "")
            byFamily[name, default: []].append((key, histogram))
        }
        var out = ""
        for name in byFamily.keys.sorted() {
            let series = byFamily[name]!.sorted { $0.0 < $1.0 }
            out += "# HELP \(name) KVM histogram \(series[0].0.parent ?? series[0].0.name) (buckets since each VM started)\n"
            out += "# TYPE \(name) histogram\n"
            for (key, histogram) in series {
                let labels = key.vcpu.map { [("vcpu", String($0))] } ?? []
                var cumulative: UInt64 = 0
                for (index, count) in histogram.buckets.enumerated() {
                    cumulative &+= count
                    let last = index == histogram.buckets.count - 1
                    let bound = last ? "+Inf" : Self.upperBound(of: index, histogram)
                    out += name + "_bucket" + Self.labelText(labels + [("le", bound)]) + " \(cumulative)\n"
                }
                if histogram.buckets.isEmpty { out += name + "_bucket" + Self.labelText(labels + [("le", "+Inf")]) + " 0\n" }
                // OpenMetrics allows `_count` only beside a `_sum`, which KVM does not keep.
                if !openMetrics { out += name + "_count" + Self.labelText(labels) + " \(cumulative)\n" }
            }
        }
        return out
    }

    /// The inclusive upper bound of bucket `index`, in the histogram's base unit: log2 bucket
    /// i holds [2^(i-1), 2^i) (bucket 0 the value 0), linear bucket i [i·size, (i+1)·size).
    static func upperBound(of index: Int, _ histogram: Histogram) -> String {
        let units: UInt64
        switch histogram.scale {
        case .log2: units = index == 0 ? 0 : (UInt64(1) << UInt64(min(index, 63))) - 1
        case .linear(let size): units = UInt64(index + 1) &* size &- 1
        }
        return scaled(units, base: histogram.base, exponent: histogram.exponent)
    }

    /// `units` × base^exponent, exactly in decimal for base 10 (`3e-9` as `0.000000003`).
    static func scaled(_ units: UInt64, base: Int, exponent: Int) -> String {
        guard base == 10 else {
            var factor = 1.0
            for _ in 0..<abs(exponent) { factor *= Double(base) }
            return "\(exponent < 0 ? Double(units) / factor : Double(units) * factor)"
        }
        if exponent >= 0 { return units == 0 ? "0" : String(units) + String(repeating: "0", count: exponent) }
        var digits = String(units)
        if digits.count <= -exponent { digits = String(repeating: "0", count: -exponent - digits.count + 1) + digits }
        let point = digits.index(digits.endIndex, offsetBy: exponent)
        var fraction = String(digits[point...])
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return String(digits[..<point]) + (fraction.isEmpty ? "" : "." + fraction)
    }

    /// `1234567890` ns as `1.23456789` (exact: nine decimals, trailing zeros dropped).
    static func seconds(fromNanoseconds value: UInt64) -> String {
        let whole = value / 1_000_000_000
        let fraction = value % 1_000_000_000
        guard fraction > 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    /// A metric name from a statistic's: [a-zA-Z0-9_], not starting with a digit.
    static func metricName(_ name: String) -> String {
        var result = String(name.unicodeScalars.map { scalar -> Character in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_")
                ? Character(scalar) : "_"
        })
        if result.first?.isNumber == true { result = "_" + result }
        return result
    }

    /// `{a="x",b="y"}`, values escaped as the format wants (backslash, quote, line break).
    static func labelText(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
    }

    static func escapeLabel(_ value: String) -> String { escape(value, quotes: true) }

    static func escapeHelp(_ text: String) -> String { escape(text, quotes: false) }

    /// Backslashes and line breaks escaped (and double quotes, in label values).
    private static func escape(_ text: String, quotes: Bool) -> String {
        var out = ""
        for character in text {
            switch character {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\"" where quotes: out += "\\\""
            default: out.append(character)
            }
        }
        return out
    }
}
