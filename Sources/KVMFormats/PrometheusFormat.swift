import KVMCore

/// Prometheus's text exposition format 0.0.4 (or OpenMetrics 1.0 with `openMetrics`), for
/// node_exporter's textfile collector (`-L FILE.prom`, each sample replacing the file) and the
/// `--listen` endpoint. Every record is a whole exposition.
///
/// Names and types come from the sample's family descriptions (README, "Prometheus"):
/// tracepoints are `kvm_tracepoint_total{tracepoint=...}` and their exit reasons
/// `kvm_tracepoint_reason_total{tracepoint=...,reason=...}`; KVM's own statistics are one
/// family each, `kvm_<stat>_total` for counters and `kvm_<stat>` for gauges, in base units
/// (`halt_wait_ns` as `kvm_halt_wait_seconds_total`), with a `vcpu` label where the source has
/// per-vCPU values (then only those are exported, so `sum()` counts each event once); other
/// origins go under their namespace (`kvm_<namespace>_<name>`), kvmstat's own under
/// `kvmstat_`. Guests' values are separate `kvm_guest_*` families labelled by guest and pid.
/// A name two sources report gets a `source` label. Totals count since kvmstat started and
/// never go down within one kvmstat process.
public struct PrometheusFormat: Format {
    public let openMetrics: Bool

    public init(openMetrics: Bool = false) { self.openMetrics = openMetrics }

    public var name: String { openMetrics ? "openmetrics" : "prometheus" }
    public var repeatsBannerInFile: Bool { false }
    public var replacesFile: Bool { true }
    public var recordsStandAlone: Bool { true }
    public var labelsGuests: Bool { true }

    /// The endpoint serves the text format to whoever accepts anything, OpenMetrics to those
    /// who ask for it (Prometheus rates it above the text format).
    public var mediaTypes: [MediaType] {
        openMetrics
            ? [MediaType("application/openmetrics-text", parameters: "version=1.0.0; charset=utf-8", quality: 1)]
            : [MediaType("text/plain", parameters: "version=0.0.4; charset=utf-8", quality: 1)]
    }

    public func banner(keys: [EventID], of sample: Sample) -> String? { nil }

    public func batch(_ sample: Sample) -> String { exposition(sample, keys: sample.sortedKeys) }

    /// The whole exposition without its last line break (log mode adds it).
    public func record(_ sample: Sample, keys: [EventID]) -> String {
        String(exposition(sample, keys: keys).dropLast())
    }

    /// What a key without a description is taken for: a counter of events of its source.
    static func undescribed(_ key: EventID) -> MetricFamily {
        let source = key.source ?? "unknown"
        return MetricFamily(key.parent ?? key.name, kind: .counter, help: "\(key.parent ?? key.name) of source \(source)",
                            origin: .other(namespace: source))
    }

    /// Units that count things: no suffix (`kvm_exits_total`, not `kvm_exits_events_total`).
    static let countUnits: Set<String> = ["events", "pages"]

    /// The exposition's name of a family (before `_total`): by origin, in base units.
    static func familyName(_ family: MetricFamily, perGuest: Bool) -> String {
        var base = family.name
        if family.unit.name == "seconds" && family.unit.exponent == -9 && base.hasSuffix("_ns") {
            base.removeLast(3)
        }
        var name = metricName(base)
        // Base units name the family (`_seconds`, `_bytes`); counts of things do not.
        let unit = metricName(family.unit.name)
        if !unit.isEmpty && !Self.countUnits.contains(unit) && !name.hasSuffix("_" + unit) { name += "_" + unit }
        let guest = perGuest ? "guest_" : ""
        switch family.origin {
        case .tracepoint: return "kvm_\(guest)tracepoint"
        case .kvmStatistic: return "kvm_" + guest + name
        case .program: return "kvmstat_" + guest + name
        case .process: return "process_" + name
        case .other(let namespace): return "kvm_" + guest + metricName(namespace) + "_" + name
        }
    }

    public func exposition(_ sample: Sample, keys: [EventID]) -> String {
        String(decoding: expositionBytes(sample, keys: keys), as: UTF8.self)
    }

    public func batchBytes(_ sample: Sample) -> [UInt8] { expositionBytes(sample, keys: sample.sortedKeys) }

    func expositionBytes(_ sample: Sample, keys: [EventID]) -> [UInt8] {
        var writer = PrometheusWriter(format: self, sample: sample)
        // The host's totals (`kvm_…`), then each guest's (`kvm_guest_…`, labelled by guest):
        // separate families, so that no sum() counts an event twice.
        writer.add(keys.lazy.filter { !$0.isGuestTotal }, perGuest: false)
        // Guests' series by guest (pids in order), each guest's in key order: sorting a
        // guest's few keys, not a big host's hundreds of thousands at once (each guest's
        // list made at its size, not grown).
        var counts: [Int: Int] = [:]
        for key in sample.guestValues.keys { counts[key.guest ?? 0, default: 0] += 1 }
        var byGuest: [Int: [EventID]] = counts.mapValues { count in
            var keys: [EventID] = []
            keys.reserveCapacity(count)
            return keys
        }
        for key in sample.guestValues.keys { byGuest[key.guest ?? 0]!.append(key) }
        for guest in counts.keys.sorted() {
            let keys = byGuest.removeValue(forKey: guest)!.sorted()
            writer.add(keys, perGuest: true)
        }
        var out = Array(histogramFamilies(sample).utf8)
        writer.finish(into: &out)
        if openMetrics { out.append(contentsOf: "# EOF\n".utf8) }
        return out
    }

    /// KVM's histograms (qmp: `halt_wait_hist`) as Prometheus histograms: `kvm_halt_wait_seconds`
    /// with cumulative `le` buckets in base units, per vCPU where the source has them, and a
    /// `_count` in the text format; KVM keeps no sum, so there is no `_sum` (promtool accepts
    /// that; OpenMetrics then wants no `_count` either).
    func histogramFamilies(_ sample: Sample) -> String {
        let perVCPU = Set(sample.histograms.keys.compactMap { $0.vcpu != nil ? $0.family : nil })
        var byFamily: [String: [(EventID, Histogram)]] = [:]
        var helps: [String: String] = [:]
        for (key, histogram) in sample.histograms {
            if key.vcpu == nil, let own = key.family, perVCPU.contains(own) { continue }
            let family = sample.family(of: key) ?? Self.undescribed(key)
            // `halt_wait_hist` → `kvm_halt_wait_hist_seconds` (not `kvm_halt_wait_seconds`: that
            // is the `halt_wait_ns` counter's family in OpenMetrics). The unit is the buckets'.
            var named = family
            named.unit = MetricUnit(histogram.unit ?? "")
            let name = Self.familyName(named, perGuest: key.guest != nil)
            byFamily[name, default: []].append((key, histogram))
            helps[name] = family.help + (family.origin == .kvmStatistic && histogram.sum == nil ? " (buckets since each VM started)" : " (since kvmstat started)")
        }
        var out = ""
        for name in byFamily.keys.sorted() {
            let series = byFamily[name]!.sorted { $0.0 < $1.0 }
            out += "# HELP \(name) \(Self.escapeHelp(helps[name] ?? name))\n"
            out += "# TYPE \(name) histogram\n"
            for (key, histogram) in series {
                // Per vCPU, or per child (an exit reason of the bpf source's latencies).
                var labels = key.vcpu.map { [("vcpu", String($0))] } ?? key.childLabel.map { [("child", $0)] } ?? []
                if let guest = key.guest { labels = [("guest", sample.guestNames[guest] ?? ""), ("pid", String(guest))] + labels }
                var cumulative: UInt64 = 0
                for (index, count) in histogram.buckets.enumerated() {
                    cumulative &+= count
                    let last = index == histogram.buckets.count - 1
                    let bound = last ? "+Inf" : Self.upperBound(of: index, histogram)
                    out += name + "_bucket" + Self.labelText(labels + [("le", bound)]) + " \(cumulative)\n"
                }
                if histogram.buckets.isEmpty { out += name + "_bucket" + Self.labelText(labels + [("le", "+Inf")]) + " 0\n" }
                // OpenMetrics allows `_count` only beside a `_sum`, which KVM does not keep (the
                // bpf source's latencies have one).
                if let sum = histogram.sum {
                    out += name + "_sum" + Self.labelText(labels) + " "
                        + Self.scaled(sum, base: histogram.base, exponent: histogram.exponent) + "\n"
                }
                if !openMetrics || histogram.sum != nil {
                    out += name + "_count" + Self.labelText(labels) + " \(cumulative)\n"
                }
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
    /// Bases and exponents are whatever a source (another user's QEMU) says: outside
    /// 2...16 and -40...40 they give the plain number of units, never a trap or a huge string.
    static func scaled(_ units: UInt64, base: Int, exponent: Int) -> String {
        guard (2...16).contains(base), (-40...40).contains(exponent) else { return String(units) }
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

    /// Backslashes and line breaks escaped (and double quotes, in label values), by Unicode
    /// scalar: Swift takes CR LF for one Character, which must not slip through whole.
    private static func escape(_ text: String, quotes: Bool) -> String {
        guard text.utf8.contains(where: { $0 == 0x5C || $0 == 0x0A || (quotes && $0 == 0x22) }) else {
            return text
        }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\"" where quotes: out.append(contentsOf: "\\\"".unicodeScalars)
            default: out.append(scalar)
            }
        }
        return String(out)
    }
}
