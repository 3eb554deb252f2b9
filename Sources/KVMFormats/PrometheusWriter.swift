import KVMCore

/// The series of an exposition, written as bytes: each family's name, type and help are
/// worked out once per exposition (not once per series), each guest's labels once, numbers
/// written as digits without a String each; series go in the order of their keys (upstream's
/// sort: by event, vCPU, guest), families by name. A big host's exposition has hundreds of
/// thousands of series, made once a sample.
struct PrometheusWriter {
    let format: PrometheusFormat
    let sample: Sample

    /// A family being written: its header's parts and its series' lines so far.
    final class Family {
        let name: String
        let isCounter: Bool
        let help: String
        var lines: [UInt8] = []

        init(name: String, isCounter: Bool, help: String) {
            self.name = name
            self.isCounter = isCounter
            self.help = help
        }
    }

    /// Where a key's series goes, worked out once per family description and kind of key.
    struct Target {
        let family: Family
        /// The sample name, as bytes.
        let prefix: [UInt8]
        /// Labels every series of it has after the guest's (a dimension's: `mode="guest"`).
        var fixed: [UInt8] = []
        /// The unit's scale, when the value is exported in base units.
        let scale: (base: Int, exponent: Int)?
        let labelsTracepoint: Bool
        let labelsReason: Bool
        let labelsChild: Bool
    }

    /// What decides a key's target: its family (source and name), whether per guest, and
    /// which kind of key it is (a parent, a vCPU's, another child).
    struct TargetKey: Hashable {
        var source: String?
        var family: String
        var perGuest: Bool
        var kind: UInt8
    }

    private var families: [String: Family] = [:]
    private var targets: [TargetKey: Target] = [:]
    /// `guest="web1",pid="4242"` of each guest, made once.
    private var guestLabels: [Int: [UInt8]] = [:]
    private var ambiguousSourceLabel: [String: [UInt8]] = [:]

    init(format: PrometheusFormat, sample: Sample) {
        self.format = format
        self.sample = sample
    }

    /// Statistics that have per-vCPU rows (per guest): the vCPUs' series stand for them.
    private struct VCPUFamily: Hashable {
        var family: FamilyKey
        var guest: Int
    }

    mutating func add<Keys: Sequence>(_ keys: Keys, perGuest: Bool) where Keys.Element == EventID {
        var perVCPU = Set<VCPUFamily>()
        for key in keys where key.vcpu != nil {
            // A tracepoint's vCPUs do not add up to it (other threads, interrupts, the idle
            // task count too): its total always stays, its vCPUs go to a family of their own.
            guard let family = key.family, sample.family(of: key)?.origin != .tracepoint else { continue }
            perVCPU.insert(VCPUFamily(family: family, guest: key.guest ?? 0))
        }
        for key in keys {
            if key.vcpu == nil && key.parent == nil, let own = key.family, !perVCPU.isEmpty,
               perVCPU.contains(VCPUFamily(family: own, guest: key.guest ?? 0)) {
                continue
            }
            let kind: UInt8 = key.vcpu != nil ? 1 : key.parent != nil ? 2 : 0
            let targetKey = TargetKey(source: key.source, family: key.parent ?? key.name, perGuest: perGuest, kind: kind)
            let target: Target
            if let known = targets[targetKey] {
                target = known
            } else {
                guard let made = makeTarget(key, perGuest: perGuest) else { continue }
                targets[targetKey] = made
                target = made
            }
            let value = perGuest ? sample.guestValues[key] ?? 0 : sample.values[key]?.value ?? 0
            write(key, value, to: target, perGuest: perGuest)
        }
    }

    /// The family and fixed labels of `key`'s series; nil for a histogram's (elsewhere).
    private mutating func makeTarget(_ key: EventID, perGuest: Bool) -> Target? {
        let description = sample.family(of: key) ?? PrometheusFormat.undescribed(key)
        if description.kind == .histogram { return nil }
        let whose = perGuest ? " per guest" : ""
        let guestPart = perGuest ? "guest_" : ""
        if description.origin == .tracepoint {
            if key.vcpu != nil {
                let family = self.family("kvm_\(guestPart)tracepoint_by_vcpu", counter: true,
                                         help: "KVM tracepoint events of each vCPU thread (the rest of a tracepoint's "
                                             + "events come from other threads and interrupts)" + whose)
                return Target(family: family, prefix: Array((family.name + "_total").utf8), scale: nil,
                              labelsTracepoint: true, labelsReason: false, labelsChild: false)
            }
            if key.parent != nil {
                let family = self.family("kvm_\(guestPart)tracepoint_reason", counter: true,
                                         help: "KVM tracepoint events by exit reason (child events such as kvm_exit(HLT))" + whose)
                return Target(family: family, prefix: Array((family.name + "_total").utf8), scale: nil,
                              labelsTracepoint: true, labelsReason: true, labelsChild: false)
            }
            let family = self.family(PrometheusFormat.familyName(description, perGuest: perGuest), counter: true,
                                     help: "KVM tracepoint events counted by perf" + whose)
            return Target(family: family, prefix: Array((family.name + "_total").utf8), scale: nil,
                          labelsTracepoint: true, labelsReason: false, labelsChild: false)
        }
        let counter = description.kind == .counter
        let scaled = !description.unit.isBase
        // One value of a bigger family's label: that family, with the label.
        var named = description
        var fixed: [(String, String)] = []
        if let dimension = description.dimension {
            named.name = dimension.family
            named.help = dimension.help
            fixed = dimension.labels.map { ($0.name, $0.value) }
        }
        var name = PrometheusFormat.familyName(named, perGuest: perGuest)
        // Other children (not a vCPU's) are a breakdown of their parent: a family of their
        // own, so that sum() over the parent's counts nothing twice.
        let child = key.vcpu == nil && key.childLabel != nil
        if child { name += "_by_child" }
        let family = self.family(name, counter: counter,
                                 help: named.help + whose + " (" + (counter ? "since kvmstat started" : "current value")
                                     + (scaled ? ", in \(description.unit.name)" : "") + ")")
        var fixedBytes: [UInt8] = []
        Self.appendLabels(fixed, to: &fixedBytes)
        return Target(family: family, prefix: Array((counter ? name + "_total" : name).utf8), fixed: fixedBytes,
                      scale: scaled ? (description.unit.base, description.unit.exponent) : nil,
                      labelsTracepoint: false, labelsReason: false, labelsChild: child)
    }

    private mutating func family(_ name: String, counter: Bool, help: String) -> Family {
        if let known = families[name] { return known }
        let made = Family(name: name, isCounter: counter, help: help)
        families[name] = made
        return made
    }

    /// One series line: the target's prefix, the key's own labels, the value.
    private mutating func write(_ key: EventID, _ value: UInt64, to target: Target, perGuest: Bool) {
        var line = target.family.lines
        target.family.lines = []
        line.append(contentsOf: target.prefix)
        var open = false
        func separator() {
            line.append(UInt8(ascii: open ? "," : "{"))
            open = true
        }
        if perGuest, let guest = key.guest {
            separator()
            if let known = guestLabels[guest] {
                line.append(contentsOf: known)
            } else {
                var labels: [UInt8] = []
                Self.appendLabels([("guest", sample.guestNames[guest] ?? ""), ("pid", String(guest))], to: &labels)
                guestLabels[guest] = labels
                line.append(contentsOf: labels)
            }
        }
        if let source = key.source, sample.name(of: key) != key.name {
            separator()
            Self.appendLabels([("source", source)], to: &line)
        }
        if !target.fixed.isEmpty {
            separator()
            line.append(contentsOf: target.fixed)
        }
        if target.labelsTracepoint {
            separator()
            Self.appendLabels([("tracepoint", key.parent ?? key.name)], to: &line)
            if target.labelsReason, let reason = key.childLabel {
                line.append(UInt8(ascii: ","))
                Self.appendLabels([("reason", reason)], to: &line)
            }
        }
        if let vcpu = key.vcpu {
            separator()
            line.append(contentsOf: "vcpu=\"".utf8)
            Self.appendDigits(UInt64(max(0, vcpu)), to: &line)
            line.append(UInt8(ascii: "\""))
        }
        if target.labelsChild, let child = key.childLabel {
            separator()
            Self.appendLabels([("child", child)], to: &line)
        }
        if open { line.append(UInt8(ascii: "}")) }
        line.append(UInt8(ascii: " "))
        if let scale = target.scale {
            line.append(contentsOf: PrometheusFormat.scaled(value, base: scale.base, exponent: scale.exponent).utf8)
        } else {
            Self.appendDigits(value, to: &line)
        }
        line.append(UInt8(ascii: "\n"))
        target.family.lines = line
    }

    /// `a="x",b="y"` (no braces), values escaped as the format wants.
    static func appendLabels(_ labels: [(String, String)], to bytes: inout [UInt8]) {
        for (index, (name, value)) in labels.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: name.utf8)
            bytes.append(contentsOf: "=\"".utf8)
            bytes.append(contentsOf: PrometheusFormat.escapeLabel(value).utf8)
            bytes.append(UInt8(ascii: "\""))
        }
    }

    /// A number's decimal digits, without making a String of it.
    static func appendDigits(_ value: UInt64, to bytes: inout [UInt8]) {
        if value < 10 {
            bytes.append(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 20 digits at most, in 24 bytes
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { raw in
            while rest > 0 {
                raw[23 - count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            }
            bytes.append(contentsOf: raw[(24 - count)...])
        }
    }

    /// The families, by name, each with HELP and TYPE before its series, appended to `out`;
    /// each family's lines are let go once copied (the exposition is not held twice over).
    mutating func finish(into out: inout [UInt8]) {
        out.reserveCapacity(out.count + families.values.reduce(0) { $0 + $1.lines.count + 200 })
        for name in families.keys.sorted() {
            let family = families.removeValue(forKey: name)!
            let typeName = format.openMetrics || !family.isCounter ? family.name : family.name + "_total"
            out.append(contentsOf: "# HELP \(typeName) \(PrometheusFormat.escapeHelp(family.help))\n".utf8)
            out.append(contentsOf: "# TYPE \(typeName) \(family.isCounter ? "counter" : "gauge")\n".utf8)
            out.append(contentsOf: family.lines)
        }
    }
}
