import KVMCore
@testable import KVMFormats
import Testing

/// The prometheus format's names, types and escaping, on a sample made by hand.
struct PrometheusFormatTests {
    @Test func familiesTypesAndLabels() {
        let stat = { (value: UInt64) in EventStat(value: value, previous: 0) }
        let tracepoint = { (name: String) in
            MetricFamily(name, kind: .counter, help: "KVM tracepoint \(name)", origin: .tracepoint)
        }
        let statistic = { (name: String, kind: MetricKind, unit: MetricUnit) in
            MetricFamily(name, kind: kind, unit: unit, help: "KVM statistic \(name)", origin: .kvmStatistic)
        }
        var sample = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: [
            EventID("kvm_exit").from("tracepoint"): stat(7),
            EventID("kvm_exit(HLT)", parent: "kvm_exit").from("tracepoint"): stat(5),
            EventID("kvm_exit(A\"B\\C\nD)", parent: "kvm_exit").from("tracepoint"): stat(2),
            // A tracepoint is a tracepoint whatever its name says.
            EventID("vcpu_match_mmio").from("tracepoint"): stat(3),
            EventID("exits").from("qmp"): stat(30),
            EventID("exits(vcpu0)", parent: "exits", vcpu: 0).from("qmp"): stat(10),
            EventID("exits(vcpu1)", parent: "exits", vcpu: 1).from("qmp"): stat(20),
            EventID("pages_4k").from("qmp"): stat(512),
            EventID("halt-exits.x").from("qmp"): stat(1),
            EventID("halt_wait_ns").from("qmp"): stat(1_500_000_007),
        ])
        sample.families = [
            "tracepoint": ["kvm_exit": tracepoint("kvm_exit"), "vcpu_match_mmio": tracepoint("vcpu_match_mmio")],
            "qmp": [
                "exits": statistic("exits", .counter, .events),
                "pages_4k": statistic("pages_4k", .gauge, .pages),
                "halt-exits.x": statistic("halt-exits.x", .counter, .events),
                "halt_wait_ns": statistic("halt_wait_ns", .counter, .nanoseconds),
                "halt_wait_hist": statistic("halt_wait_hist", .histogram, .nanoseconds),
            ],
        ]
        let text = PrometheusFormat().batch(sample)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains("# TYPE kvm_tracepoint_total counter"))
        #expect(lines.contains(#"kvm_tracepoint_total{tracepoint="kvm_exit"} 7"#))
        #expect(lines.contains(#"kvm_tracepoint_reason_total{tracepoint="kvm_exit",reason="HLT"} 5"#))
        #expect(lines.contains(#"kvm_tracepoint_reason_total{tracepoint="kvm_exit",reason="A\"B\\C\nD"} 2"#))
        #expect(lines.contains(#"kvm_tracepoint_total{tracepoint="vcpu_match_mmio"} 3"#))
        #expect(!text.contains("kvm_vcpu_match_mmio"))
        // Per-vCPU series stand for the statistic: no unlabelled series to count twice.
        #expect(lines.contains(#"kvm_exits_total{vcpu="0"} 10"#) && lines.contains(#"kvm_exits_total{vcpu="1"} 20"#))
        #expect(!lines.contains("kvm_exits_total 30"))
        #expect(lines.contains("# TYPE kvm_pages_4k gauge") && lines.contains("kvm_pages_4k 512"))
        #expect(lines.contains("kvm_halt_exits_x_total 1"))
        #expect(lines.contains("kvm_halt_wait_seconds_total 1.500000007"))
        // Every family has HELP and TYPE before its series.
        #expect(lines.filter { $0.hasPrefix("# HELP ") }.count == lines.filter { $0.hasPrefix("# TYPE ") }.count)
        // A log2 histogram in nanoseconds: cumulative buckets in seconds, the last +Inf.
        var histogram = sample
        histogram.histograms = [EventID("halt_wait_hist(vcpu0)", parent: "halt_wait_hist", vcpu: 0).from("qmp"):
            Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -9, buckets: [1, 0, 2, 3])]
        let hist = PrometheusFormat().batch(histogram).split(separator: "\n").map(String.init)
        #expect(hist.contains("# TYPE kvm_halt_wait_hist_seconds histogram"))
        #expect(hist.contains(#"kvm_halt_wait_hist_seconds_bucket{vcpu="0",le="0"} 1"#), "\(hist)")
        #expect(hist.contains(#"kvm_halt_wait_hist_seconds_bucket{vcpu="0",le="0.000000003"} 3"#), "\(hist)")
        #expect(hist.contains(#"kvm_halt_wait_hist_seconds_bucket{vcpu="0",le="+Inf"} 6"#))
        #expect(hist.contains(#"kvm_halt_wait_hist_seconds_count{vcpu="0"} 6"#))
        let open = PrometheusFormat(openMetrics: true).batch(sample)
        #expect(open.hasSuffix("# EOF\n") && open.contains("# TYPE kvm_exits counter\n"))
    }
}

extension PrometheusFormatTests {
    /// Guests' series: each guest's labels, pids in order and each guest's series in key
    /// order within a family, a statistic's own row left out only for the guests that have
    /// per-vCPU rows of it, scaled values, a name two sources report labelled by source.
    /// (Guests share their keys' shapes, worked out once an exposition: what one guest has
    /// and another not must not leak between them.)
    @Test func guestSeriesByGuestAndShape() {
        let statistic = { (name: String, unit: MetricUnit) in
            MetricFamily(name, kind: .counter, unit: unit, help: "KVM statistic \(name)", origin: .kvmStatistic)
        }
        var guestValues = GuestValues()
        let exits = EventID("exits").from("qmp")
        let vcpu = { (n: Int) in EventID("exits(vcpu\(n))", parent: "exits", vcpu: n).from("qmp") }
        // Guest 20 has per-vCPU rows of exits, guest 300 only the statistic, guest 4000 both
        // a row of its own and one vCPU's; the departed guests' row (-2) the statistic.
        guestValues[exits.of(guest: 20)] = 3
        guestValues[vcpu(0).of(guest: 20)] = 1
        guestValues[vcpu(1).of(guest: 20)] = 2
        guestValues[exits.of(guest: 300)] = 30
        guestValues[exits.of(guest: 4000)] = 40
        guestValues[vcpu(7).of(guest: 4000)] = 40
        guestValues[exits.of(guest: EventID.departedGuests)] = 9
        for (guest, value) in [(20, 1_500_000_000), (300, 7), (4000, 0)] {
            guestValues[EventID("halt_wait_ns").from("qmp").of(guest: guest)] = UInt64(value)
            // Two sources report `mmio_exits`: each series says which.
            guestValues[EventID("mmio_exits").from("qmp").of(guest: guest)] = 5
            guestValues[EventID("mmio_exits").from("libvirt").of(guest: guest)] = 6
        }
        var sample = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: [
            EventID("mmio_exits").from("qmp"): EventStat(value: 15, previous: 0),
            EventID("mmio_exits").from("libvirt"): EventStat(value: 18, previous: 0),
        ], guestValues: guestValues)
        sample.guestNames = [20: "b\"q", 300: "a", 4000: "c"]
        sample.families = [
            "qmp": ["exits": statistic("exits", .events), "halt_wait_ns": statistic("halt_wait_ns", .nanoseconds),
                    "mmio_exits": statistic("mmio_exits", .events)],
            "libvirt": ["mmio_exits": statistic("mmio_exits", .events)],
        ]
        let lines = PrometheusFormat().batch(sample).split(separator: "\n").map(String.init)
        let exitLines = lines.filter { $0.hasPrefix("kvm_guest_exits_total") }
        #expect(exitLines == [
            #"kvm_guest_exits_total{guest="",pid="-2"} 9"#,
            #"kvm_guest_exits_total{guest="b\"q",pid="20",vcpu="0"} 1"#,
            #"kvm_guest_exits_total{guest="b\"q",pid="20",vcpu="1"} 2"#,
            #"kvm_guest_exits_total{guest="a",pid="300"} 30"#,
            #"kvm_guest_exits_total{guest="c",pid="4000",vcpu="7"} 40"#,
        ], "\(exitLines)")
        #expect(lines.filter { $0.hasPrefix("kvm_guest_halt_wait_seconds_total") } == [
            #"kvm_guest_halt_wait_seconds_total{guest="b\"q",pid="20"} 1.5"#,
            #"kvm_guest_halt_wait_seconds_total{guest="a",pid="300"} 0.000000007"#,
            #"kvm_guest_halt_wait_seconds_total{guest="c",pid="4000"} 0"#,
        ])
        let mmio = lines.filter { $0.hasPrefix("kvm_guest_mmio_exits_total") }
        #expect(mmio.count == 6 && mmio.contains(#"kvm_guest_mmio_exits_total{guest="a",pid="300",source="libvirt"} 6"#)
                    && mmio.contains(#"kvm_guest_mmio_exits_total{guest="a",pid="300",source="qmp"} 5"#), "\(mmio)")
        #expect(lines.contains(#"kvm_mmio_exits_total{source="qmp"} 15"#))
        // Each family once, its HELP and TYPE before its series.
        let types = lines.filter { $0.hasPrefix("# TYPE ") }
        #expect(Set(types).count == types.count && types.contains("# TYPE kvm_guest_exits_total counter"))
    }
}

extension PrometheusFormatTests {
    /// One format's expositions remember their keys' shapes (names, labels, units) for the
    /// next, and take them again only while what they were made from is the same: a source
    /// that changes a statistic's unit, or a second source with the same name, shows at once.
    @Test func rememberedShapesFollowTheirDescriptions() {
        let format = PrometheusFormat()
        let key = EventID("halt_wait_ns").from("qmp")
        func sample(unit: MetricUnit, twoSources: Bool) -> Sample {
            var values = [key: EventStat(value: 2_000_000_000, previous: 0)]
            var guestValues: GuestValues = [key.of(guest: 7): 1_000_000_000]
            if twoSources {
                values[EventID("halt_wait_ns").from("libvirt")] = EventStat(value: 1, previous: 0)
                guestValues[EventID("halt_wait_ns").from("libvirt").of(guest: 7)] = 1
            }
            var made = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: values,
                              guestNames: [7: "g"], guestValues: guestValues)
            let family = MetricFamily("halt_wait_ns", kind: .counter, unit: unit, help: "KVM statistic halt_wait_ns",
                                      origin: .kvmStatistic)
            made.families = ["qmp": ["halt_wait_ns": family], "libvirt": ["halt_wait_ns": family]]
            return made
        }
        let first = format.batch(sample(unit: .nanoseconds, twoSources: false))
        #expect(first.contains("kvm_halt_wait_seconds_total 2\n"), "\(first)")
        #expect(first.contains(#"kvm_guest_halt_wait_seconds_total{guest="g",pid="7"} 1"#))
        #expect(format.shapeMemory.count >= 2)
        let again = format.batch(sample(unit: .nanoseconds, twoSources: false))
        #expect(again == first)
        let counted = format.batch(sample(unit: .events, twoSources: false))
        #expect(counted.contains("kvm_halt_wait_ns_total 2000000000\n") && !counted.contains("seconds"), "\(counted)")
        let shared = format.batch(sample(unit: .nanoseconds, twoSources: true))
        #expect(shared.contains(#"kvm_halt_wait_seconds_total{source="qmp"} 2"#), "\(shared)")
        #expect(shared.contains(#"kvm_guest_halt_wait_seconds_total{guest="g",pid="7",source="libvirt"} 0.000000001"#))
        let alone = format.batch(sample(unit: .nanoseconds, twoSources: false))
        #expect(alone == first)
    }

    /// A source that makes ever new keys (another user's monitor naming statistics anew each
    /// sample) cannot make the format remember without bound.
    @Test func rememberedShapesAreBounded() {
        let format = PrometheusFormat()
        for round in 0..<3 {
            var values: [EventID: EventStat] = [:]
            for n in 0..<30_000 { values[EventID("s\(round)_\(n)").from("qmp")] = EventStat(value: 1, previous: 0) }
            let text = format.batch(Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: values))
            #expect(text.contains("kvm_qmp_s\(round)_29999_total 1"))
            #expect(format.shapeMemory.count <= ShapeMemory.limit)
        }
    }

    /// An exposition made from the same descriptions as the last starts from its shapes and
    /// families: a family the last one had and this one has no series of is not named, and
    /// one this one adds is.
    @Test func keptFamiliesAreNamedOnlyWithSeries() {
        let format = PrometheusFormat()
        let families = ["qmp": ["exits": MetricFamily("exits", kind: .counter, help: "KVM statistic exits", origin: .kvmStatistic),
                                "pages_4k": MetricFamily("pages_4k", kind: .gauge, unit: .pages, help: "KVM statistic pages_4k",
                                                         origin: .kvmStatistic)]]
        func sample(_ names: [String], guests: [Int]) -> Sample {
            var values: [EventID: EventStat] = [:]
            var guestValues = GuestValues()
            for name in names {
                values[EventID(name).from("qmp")] = EventStat(value: 3, previous: 0)
                for guest in guests { guestValues[EventID(name).from("qmp").of(guest: guest)] = UInt64(guest) }
            }
            var made = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1, values: values,
                              guestNames: Dictionary(uniqueKeysWithValues: guests.map { ($0, "g\($0)") }), guestValues: guestValues)
            made.families = families
            return made
        }
        let both = format.batch(sample(["exits", "pages_4k"], guests: [10, 20]))
        #expect(both.contains("# TYPE kvm_pages_4k gauge") && both.contains(#"kvm_guest_pages_4k{guest="g20",pid="20"} 20"#))
        let fewer = format.batch(sample(["exits"], guests: [30]))
        #expect(!fewer.contains("pages_4k") && !fewer.contains("g10") && !fewer.contains("g20"), "\(fewer)")
        #expect(fewer.contains(#"kvm_guest_exits_total{guest="g30",pid="30"} 30"#) && fewer.contains("kvm_exits_total 3"))
        let types = fewer.split(separator: "\n").filter { $0.hasPrefix("# TYPE") }
        #expect(types == ["# TYPE kvm_exits_total counter", "# TYPE kvm_guest_exits_total counter"], "\(types)")
        // Made afresh, the same.
        #expect(PrometheusFormat().batch(sample(["exits"], guests: [30])) == fewer)
    }
}

extension PrometheusFormatTests {
    /// The guests' series are written family by family as the exposition is handed on (in
    /// pieces, to the endpoint's gzip): the pieces are the whole exposition, a family bigger
    /// than a piece stays one run of lines in pid order, and values a source gave without a
    /// guest come first, without guest labels.
    @Test func piecesAreTheWholeExpositionFamilyByFamily() {
        let exits = EventID("exits").from("qmp")
        let vcpu = { (n: Int) in EventID("exits(vcpu\(n))", parent: "exits", vcpu: n).from("qmp") }
        let halts = EventID("halt_exits").from("qmp")
        var values = GuestValues()
        // Guests added in no order, 8 vCPUs each: the vCPU family is over a megabyte.
        for guest in (1...2_000).reversed() {
            for n in 0..<8 { values[vcpu(n).of(guest: guest)] = UInt64(guest * 8 + n) }
            values[halts.of(guest: guest)] = UInt64.max - UInt64(guest)
        }
        values[halts.of(guest: nil)] = 5
        var sample = Sample(time: WallClock(seconds: 0, nanoseconds: 0), interval: 1,
                            values: [exits: EventStat(value: 1, previous: 0)], guestValues: values)
        sample.families = ["qmp": [
            "exits": MetricFamily("exits", kind: .counter, help: "exits", origin: .kvmStatistic),
            "halt_exits": MetricFamily("halt_exits", kind: .counter, help: "halts", origin: .kvmStatistic),
        ]]
        for format in [PrometheusFormat(), PrometheusFormat(openMetrics: true)] {
            var pieces: [[UInt8]] = []
            format.batchBytes(sample) { pieces.append(Array($0)) }
            let whole = format.batchBytes(sample)
            #expect(pieces.flatMap { $0 } == whole && pieces.count > 4 && !pieces.contains { $0.isEmpty })
            let lines = String(decoding: whole, as: UTF8.self).split(separator: "\n").map(String.init)
            let vcpuLines = lines.indices.filter { lines[$0].hasPrefix("kvm_guest_exits") }
            #expect(vcpuLines.count == 16_000 && vcpuLines.last! - vcpuLines.first! == 15_999, "one run of lines")
            #expect(lines[vcpuLines.first!] == #"kvm_guest_exits_total{guest="",pid="1",vcpu="0"} 8"#)
            #expect(lines[vcpuLines.last!].hasPrefix(#"kvm_guest_exits"#) && lines[vcpuLines.last!].hasSuffix(#"pid="2000",vcpu="7"} 16007"#))
            let haltLines = lines.filter { $0.hasPrefix("kvm_guest_halt_exits") }
            #expect(haltLines.count == 2_001 && haltLines.first!.hasSuffix("_total 5") && !haltLines.first!.contains("{"))
            #expect(haltLines[1].hasSuffix(#"{guest="",pid="1"} \#(UInt64.max - 1)"#))
            #expect(lines.last == (format.openMetrics ? "# EOF" : haltLines.last))
        }
    }
}
