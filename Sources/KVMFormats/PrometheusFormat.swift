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
    /// The last exposition's numbered shapes (`ShapeMemory`), shared by copies.
    let shapeMemory = ShapeMemory()

    public init(openMetrics: Bool = false) { self.openMetrics = openMetrics }

    public var name: String { openMetrics ? "openmetrics" : "prometheus" }
    public var repeatsBannerInFile: Bool { false }
    public var replacesFile: Bool { true }
    public var recordsStandAlone: Bool { true }
    public var labelsGuests: Bool { true }
    public var showsHistograms: Bool { true }

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

    public func batchBytes(_ sample: Sample) -> [UInt8] { batchBytes(sample, expectedSize: 0) }

    public func batchBytes(_ sample: Sample, expectedSize: Int) -> [UInt8] {
        expositionBytes(sample, keys: sample.sortedKeys, expectedSize: expectedSize)
    }

    public func batchBytes(_ sample: Sample, into sink: (UnsafeRawBufferPointer) -> Void) {
        write(sample, keys: sample.sortedKeys, to: sink)
    }

    /// `expectedSize`: the caller's better guess of the length (the last sample's), 0: none.
    func expositionBytes(_ sample: Sample, keys: [EventID], expectedSize: Int = 0) -> [UInt8] {
        var out: [UInt8] = []
        write(sample, keys: keys, to: { out.append(contentsOf: $0) },
              size: { out.reserveCapacity(expectedSize > 0 ? expectedSize + expectedSize / 16 : $0) })
        // The size was a guess (the last sample's, or about a line a guest's value): what is
        // kept (the endpoint keeps a sample's bytes) holds no megabytes of room it did not use.
        if out.capacity - out.count > out.count / 8 { out = out.withUnsafeBufferPointer { [UInt8]($0) } }
        return out
    }

    /// The exposition of `keys`, handed to `sink` family by family (each family's lines let
    /// go once handed on), after `size` is told about how many bytes it will be.
    private func write(_ sample: Sample, keys: [EventID], to sink: (UnsafeRawBufferPointer) -> Void,
                       size: (Int) -> Void = { _ in }) {
        var writer = PrometheusWriter(format: self, sample: sample)
        // The host's totals (`kvm_…`), then each guest's (`kvm_guest_…`, labelled by guest):
        // separate families, so that no sum() counts an event twice.
        writer.addHost(keys.filter { !$0.isGuestTotal }.map { key in
            PrometheusWriter.Entry(shape: writer.shape(of: key, perGuest: false), guest: key.guest,
                                   value: sample.values[key]?.value ?? 0)
        })
        // Guests' series (pids in order, each guest's in key order), written family by family
        // at `finish`. Every guest has the same few shapes of key (a statistic, of a vCPU):
        // shapes are worked out and put in order once, not sorted as keys, however many
        // guests there are.
        writer.addGuests(sample.guestValues)
        var histograms: [UInt8] = []
        appendHistogramFamilies(sample, to: &histograms)
        size(histograms.count + writer.byteEstimate + 6)
        if !histograms.isEmpty { histograms.withUnsafeBytes(sink) }
        writer.finish(sink)
        if openMetrics { Array("# EOF\n".utf8).withUnsafeBytes(sink) }
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
        // Most names are one already (KVM's statistics): nothing to change, nothing to make.
        if let first = name.utf8.first, !(0x30...0x39).contains(first),
           name.utf8.allSatisfy({ (0x61...0x7A).contains($0) || $0 == 0x5F || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) }) {
            return name
        }
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
