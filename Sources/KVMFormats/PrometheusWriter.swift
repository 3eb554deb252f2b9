import KVMCore

/// The series of an exposition, written as bytes: each family's name, type and help are
/// worked out once per exposition (not once per series), each guest's labels once, numbers
/// written as digits without a String each; series go in the order of their keys (upstream's
/// sort: by event, vCPU, guest), families by name. A big host's exposition has hundreds of
/// thousands of series, made once a sample.
struct PrometheusWriter {
    let format: PrometheusFormat
    let sample: Sample

    /// A family being written: its header's parts, and its number (its series' lines are
    /// `lines[number]`).
    struct Family {
        let name: String
        let isCounter: Bool
        let help: String
        let number: Int32
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

    /// Shapes and families as numbered (`ShapeTable`): the last exposition's, when made from
    /// the same descriptions.
    var table: ShapeTable
    /// Each family's series lines so far, by its number (the host's: the guests' are written
    /// at `finish`, from `guests`).
    var lines: [[UInt8]] = []
    /// The guests' values, written family by family when the exposition is finished.
    var guests: GuestSeries?
    private var targets: [TargetKey: Target] = [:]

    init(format: PrometheusFormat, sample: Sample) {
        self.format = format
        self.sample = sample
        table = format.shapeMemory.table(for: sample) ?? ShapeTable(families: sample.families,
                                                                    ambiguous: sample.ambiguousNames)
        lines = Array(repeating: [], count: table.families.count)
    }

    /// What every series of one shape of key (a key but its guest) has in common, worked out
    /// once an exposition, not once a guest: where it goes, and its own labels. Plain values
    /// (bytes are ranges of `shapeBytes`): written hundreds of thousands of times, copied
    /// without reference counting.
    struct Shape {
        /// Its family's number; -1 for a histogram's (written elsewhere).
        let family: Int32
        /// Its series' name (`kvm_exits_total`) in `shapeBytes`.
        let name: Range<Int>
        /// What follows a guest's labels (`guest="web1",pid="4242"`, opened by `{`): its own
        /// labels (`source`, a dimension's, `tracepoint` and `reason`, `vcpu`, `child`), the
        /// closing brace and a space, in `shapeBytes`; and what follows the name where no
        /// guest's labels come (its own labels in braces, if any, and a space).
        let afterGuest: Range<Int>
        let alone: Range<Int>
        /// Its family in this exposition (numbered), when its vCPUs' series stand for it:
        /// a statistic's own row, or a vCPU's row of one; -1 otherwise (a tracepoint's vCPUs
        /// do not add up to it: other threads, interrupts and the idle task count too).
        let vcpuFamily: Int32
        let isVCPU: Bool
        /// The unit's scale (`base`^`exponent`), when the value is exported in base units.
        let scaled: Bool
        let base: Int
        let exponent: Int
    }

    var shapeCount: Int { table.shapes.count }

    /// The number of `key`'s shape (made the first time one is seen).
    mutating func shape(of key: EventID, perGuest: Bool) -> Int32 {
        // A number's hash, not a key's: hundreds of thousands of keys a big host's exposition.
        // (A host's and a guest's shape of one key have the same `shapeCode`; the sign keeps
        // them apart, and `sameShape` tells a shape from another of the same code.)
        let code = perGuest ? key.shapeCode | Int.min : key.shapeCode & Int.max
        if let first = table.shapeByCode[code], table.shapeKeys[Int(first)].sameShape(as: key) { return first }
        let shapeKey = ShapeKey(key: key, perGuest: perGuest)
        if let known = table.shapeNumbers[shapeKey] { return known }
        let number = Int32(table.shapes.count)
        table.shapes.append(makeShape(key, perGuest: perGuest))
        table.shapeKeys.append(key)
        table.shapeNumbers[shapeKey] = number
        if table.shapeByCode[code] == nil { table.shapeByCode[code] = number }
        return number
    }

    /// `key`'s shape worked out: its family, name and labels.
    private mutating func makeShape(_ key: EventID, perGuest: Bool) -> Shape {
        let description = sample.family(of: key)
        var vcpuFamily: Int32 = -1
        if let family = key.family, key.parent == nil || key.vcpu != nil, description?.origin != .tracepoint {
            if let known = table.vcpuFamilies[family] {
                vcpuFamily = known
            } else {
                vcpuFamily = Int32(table.vcpuFamilies.count)
                table.vcpuFamilies[family] = vcpuFamily
            }
        }
        let kind: UInt8 = key.vcpu != nil ? 1 : key.parent != nil ? 2 : 0
        let targetKey = TargetKey(source: key.source, family: key.parent ?? key.name, perGuest: perGuest, kind: kind)
        let found: Target?
        if let known = targets[targetKey] {
            found = known
        } else {
            found = makeTarget(key, perGuest: perGuest, description: description)
            if let found { targets[targetKey] = found }
        }
        guard let target = found else {
            return Shape(family: -1, name: 0..<0, afterGuest: 0..<0, alone: 0..<0, vcpuFamily: vcpuFamily,
                         isVCPU: key.vcpu != nil, scaled: false, base: 10, exponent: 0)
        }
        let ambiguous = key.source != nil && sample.name(of: key) != key.name
        var labels: [UInt8] = []
        func separator() {
            if !labels.isEmpty { labels.append(UInt8(ascii: ",")) }
        }
        if let source = key.source, ambiguous {
            separator()
            Self.appendLabels([("source", source)], to: &labels)
        }
        if !target.fixed.isEmpty {
            separator()
            labels.append(contentsOf: target.fixed)
        }
        if target.labelsTracepoint {
            separator()
            Self.appendLabels([("tracepoint", key.parent ?? key.name)], to: &labels)
            if target.labelsReason, let reason = key.childLabel {
                labels.append(UInt8(ascii: ","))
                Self.appendLabels([("reason", reason)], to: &labels)
            }
        }
        if let vcpu = key.vcpu {
            separator()
            labels.append(contentsOf: "vcpu=\"".utf8)
            Self.appendDigits(UInt64(max(0, vcpu)), to: &labels)
            labels.append(UInt8(ascii: "\""))
        }
        if target.labelsChild, let child = key.childLabel {
            separator()
            Self.appendLabels([("child", child)], to: &labels)
        }
        func place(_ parts: [UInt8]...) -> Range<Int> {
            let start = table.shapeBytes.count
            for part in parts { table.shapeBytes.append(contentsOf: part) }
            return start..<table.shapeBytes.count
        }
        let name = place(target.prefix)
        let afterGuest = labels.isEmpty ? place(Array("} ".utf8)) : place([UInt8(ascii: ",")], labels, Array("} ".utf8))
        let alone = labels.isEmpty ? place([UInt8(ascii: " ")]) : place([UInt8(ascii: "{")], labels, Array("} ".utf8))
        return Shape(family: target.family.number, name: name, afterGuest: afterGuest, alone: alone,
                     vcpuFamily: vcpuFamily, isVCPU: key.vcpu != nil, scaled: target.scale != nil,
                     base: target.scale?.base ?? 10, exponent: target.scale?.exponent ?? 0)
    }

    /// Each shape's place among the shapes of a guest's keys: the keys' order (`EventID.<`)
    /// but for the guest, a guest's total first.
    mutating func places() -> [Int32] {
        // The same shapes as when last worked out (an exposition's table kept): the same places.
        if table.places.count == table.shapes.count { return table.places }
        table.places = table.shapeKeys.withUnsafeBufferPointer { keys in
            let byPlace = (0..<Int32(keys.count)).sorted { a, b in
                let lhs = keys[Int(a)], rhs = keys[Int(b)]
                if lhs.isGuestTotal != rhs.isGuestTotal { return lhs.isGuestTotal }
                if lhs.upstreamKey != rhs.upstreamKey { return lhs.upstreamKey < rhs.upstreamKey }
                if lhs.vcpu != rhs.vcpu { return (lhs.vcpu ?? -1) < (rhs.vcpu ?? -1) }
                return (lhs.source ?? "") < (rhs.source ?? "")
            }
            var place = [Int32](repeating: 0, count: byPlace.count)
            for (index, shape) in byPlace.enumerated() { place[Int(shape)] = Int32(index) }
            return place
        }
        return table.places
    }

    /// A host's series to write: its key's shape, guest (a guest's total row) and value.
    struct Entry {
        var shape: Int32
        var guest: Int
        var value: UInt64

        init(shape: Int32, guest: Int?, value: UInt64) {
            self.shape = shape
            self.guest = guest ?? 0
            self.value = value
        }
    }

    /// Writes the host's `entries` in their order (the guests' are written at `finish`, from
    /// `guests`).
    mutating func addHost(_ entries: [Entry]) {
        // Statistics that have per-vCPU rows (per guest, by family number and guest): the
        // vCPUs' series stand for them.
        var perVCPU = Set<Int>()
        func vcpuKey(_ family: Int32, _ guest: Int) -> Int { Int(family) << 32 ^ Int(UInt32(truncatingIfNeeded: guest)) }
        for entry in entries {
            let shape = table.shapes[Int(entry.shape)]
            if shape.isVCPU && shape.vcpuFamily >= 0 { perVCPU.insert(vcpuKey(shape.vcpuFamily, entry.guest)) }
        }
        var lines = self.lines
        self.lines = []
        defer { self.lines = lines }
        table.shapes.withUnsafeBufferPointer { shapes in
            table.shapeBytes.withUnsafeBufferPointer { bytes in
                for entry in entries {
                    let shape = shapes[Int(entry.shape)]
                    guard shape.family >= 0 else { continue }
                    if !shape.isVCPU && shape.vcpuFamily >= 0 && !perVCPU.isEmpty
                        && perVCPU.contains(vcpuKey(shape.vcpuFamily, entry.guest)) {
                        continue
                    }
                    Self.appendLine(shape, bytes, guestLabels: nil, value: entry.value, to: &lines[Int(shape.family)])
                }
            }
        }
    }

    /// `{guest="web1",pid="4242"`: a guest's labels, opening a series' labels.
    func guestLabelBytes(_ pid: Int) -> [UInt8] {
        var labels = [UInt8(ascii: "{")]
        Self.appendLabels([("guest", sample.guestNames[pid] ?? ""), ("pid", String(pid))], to: &labels)
        return labels
    }

    /// One series line: the shape's name, the guest's labels (nil: none) and the shape's, the
    /// value. `bytes` are the table's `shapeBytes`.
    @inline(__always)
    static func appendLine(_ shape: Shape, _ bytes: UnsafeBufferPointer<UInt8>, guestLabels: [UInt8]?, value: UInt64,
                           to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[shape.name]))
        if let guestLabels {
            out.append(contentsOf: guestLabels)
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[shape.afterGuest]))
        } else {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[shape.alone]))
        }
        if shape.scaled {
            out.append(contentsOf: PrometheusFormat.scaled(value, base: shape.base, exponent: shape.exponent).utf8)
            out.append(UInt8(ascii: "\n"))
        } else {
            appendDigits(value, to: &out, newline: true)
        }
    }

    /// The family and fixed labels of `key`'s series; nil for a histogram's (elsewhere).
    private mutating func makeTarget(_ key: EventID, perGuest: Bool, description: MetricFamily?) -> Target? {
        let description = description ?? PrometheusFormat.undescribed(key)
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
        if let known = table.families[name] { return known }
        let made = Family(name: name, isCounter: counter, help: help, number: Int32(lines.count))
        table.families[name] = made
        lines.append([])
        return made
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
    /// (And a line break after them, with `newline`: one append for both.)
    static func appendDigits(_ value: UInt64, to bytes: inout [UInt8], newline: Bool = false) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 20 digits and a line break at most, in 24 bytes
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { raw in
            var end = 24
            if newline {
                raw[23] = UInt8(ascii: "\n")
                end = 23
                count = 1
            }
            repeat {
                raw[end - 1] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                end -= 1
                count += 1
            } while rest > 0
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[(24 - count)...]))
        }
    }

    /// About how many bytes `finish` hands on (the lines, room for each family's header, and
    /// about a line a guest's value).
    var byteEstimate: Int { lines.reduce(0) { $0 + $1.count + 200 } + (guests?.values.count ?? 0) * 90 }

    /// The families, by name, each with HELP and TYPE before its series, handed to `sink`;
    /// each family's lines are let go once handed on, and the guests' are written family by
    /// family as they are handed on (the exposition is never held whole, nor twice over).
    mutating func finish(_ sink: (UnsafeRawBufferPointer) -> Void) {
        if table.familyOrder.count != table.families.count { table.familyOrder = table.families.keys.sorted() }
        var out: [UInt8] = []
        for familyName in table.familyOrder {
            let family = table.families[familyName]!
            let number = Int(family.number)
            // A family of an earlier exposition's keys that this one has none of is not named.
            var named = false
            func name(into out: inout [UInt8]) {
                guard !named else { return }
                named = true
                let typeName = format.openMetrics || !family.isCounter ? family.name : family.name + "_total"
                out.append(contentsOf: "# HELP \(typeName) \(PrometheusFormat.escapeHelp(family.help))\n".utf8)
                out.append(contentsOf: "# TYPE \(typeName) \(family.isCounter ? "counter" : "gauge")\n".utf8)
            }
            if !lines[number].isEmpty {
                name(into: &out)
                out.withUnsafeBytes(sink)
                out.removeAll(keepingCapacity: true)
                lines[number].withUnsafeBytes(sink)
                lines[number] = []
            }
            guests?.write(family: number, shapes: table, into: &out, sink: sink, first: name(into:))
            if !out.isEmpty {
                out.withUnsafeBytes(sink)
                out.removeAll(keepingCapacity: true)
            }
        }
        format.shapeMemory.keep(table)
    }
}
