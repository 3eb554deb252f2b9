import KVMCore
import KVMSources
import Testing

/// A source that reports what it is told, for the merge rules alone.
private final class ScriptedSource: StatSource {
    let name: String
    var supportsByGuest: Bool { false }
    var next = Reading()
    /// The failure the next reads throw, if any.
    var failure: SourceError?

    init(_ name: String) { self.name = name }

    func availableFields() -> [String] { next.values.keys.map(\.name) }
    func updateFields(_ filter: FieldFilter?) throws(SourceError) {}
    func setPid(_ pid: Int) throws(SourceError) {}
    func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        if let failure { throw failure }
        return next
    }
    func reset() throws(SourceError) {}
    func close() {}
}

/// One sample from every source: keys carry their source, families their descriptions.
struct MetricModelTests {
    static func statistic(_ name: String) -> MetricFamily {
        MetricFamily(name, kind: .counter, help: "KVM statistic \(name)", origin: .kvmStatistic)
    }

    @Test func sourcesWithTheSameNameNeverOverwriteEachOther() throws {
        // qmp's plain QEMU and libvirt's domain both report `exits`: two rows, each exact.
        let qmp = ScriptedSource("qmp")
        let libvirt = ScriptedSource("libvirt")
        qmp.next = Reading(families: ["exits": Self.statistic("exits")], values: ["exits": 1_001])
        libvirt.next = Reading(families: ["exits": Self.statistic("exits")], values: ["exits": 3_002])
        let stats = Stats(sources: [qmp, libvirt])
        var sample = try stats.read()
        #expect(sample.values(of: "qmp")["exits"] == EventStat(value: 1_001, delta: 1_001))
        #expect(sample.values(of: "libvirt")["exits"] == EventStat(value: 3_002, delta: 3_002))
        qmp.next.values = ["exits": 1_011]
        libvirt.next.values = ["exits": 3_032]
        sample = try stats.read()
        #expect(sample.values(of: "qmp")["exits"]?.delta == 10)
        #expect(sample.values(of: "libvirt")["exits"]?.delta == 30)
        // Shown qualified where the names collide, plain where they do not.
        let names = sample.sortedKeys.map(sample.name(of:))
        #expect(names == ["libvirt:exits", "qmp:exits"], "\(names)")
        #expect(sample.family(of: sample.sortedKeys[0])?.origin == .kvmStatistic)
    }

    /// On the endpoint (`keepsGoing`) a source that fails is reported down, its counts kept
    /// (standing still, never zeroed), said once a spell, while the others are sampled; it
    /// comes back up when a read succeeds. Elsewhere the failure ends the run, as upstream's.
    @Test func aFailingSourceIsDownNotTheEnd() throws {
        let qmp = ScriptedSource("qmp")
        let libvirt = ScriptedSource("libvirt")
        qmp.next = Reading(families: ["exits": Self.statistic("exits")], values: ["exits": 100])
        libvirt.next = Reading(families: ["exits": Self.statistic("exits")], values: ["exits": 7])
        let stats = Stats(sources: [qmp, libvirt])
        stats.keepsGoing = true
        _ = try stats.read()
        #expect(stats.health["qmp"]?.up == true && stats.health["qmp"]?.lastSuccess != nil)
        qmp.failure = SourceError("the monitor went away")
        libvirt.next.values = ["exits": 9]
        var sample = try stats.read()
        #expect(stats.health["qmp"]?.up == false && stats.health["qmp"]?.failures == 1)
        #expect(stats.health["libvirt"]?.up == true)
        #expect(sample.values(of: "qmp")["exits"] == EventStat(value: 100, delta: 0))
        #expect(sample.family(of: EventID("exits", source: "qmp"))?.origin == .kvmStatistic)
        #expect(sample.values(of: "libvirt")["exits"] == EventStat(value: 9, delta: 2))
        let said = stats.takeWarnings()
        #expect(said.count == 1 && said[0].contains("the monitor went away") && said[0].contains("qmp"), "\(said)")
        _ = try stats.read()
        #expect(stats.takeWarnings().isEmpty && stats.health["qmp"]?.failures == 2)
        qmp.failure = nil
        qmp.next.values = ["exits": 130]
        sample = try stats.read()
        #expect(stats.health["qmp"]?.up == true)
        #expect(sample.values(of: "qmp")["exits"] == EventStat(value: 130, delta: 30))

        let strict = Stats(sources: [qmp])
        qmp.failure = SourceError("gone")
        #expect(throws: SourceError.self) { try strict.read() }
    }

    @Test func namesStayPlainWithoutACollision() throws {
        let tracepoints = ScriptedSource("tracepoint")
        tracepoints.next = Reading(values: ["kvm_exit": 5, EventID("kvm_exit(HLT)", parent: "kvm_exit"): 5])
        let debugfs = ScriptedSource("debugfs")
        debugfs.next = Reading(values: ["exits": 9])
        let sample = try Stats(sources: [tracepoints, debugfs]).read()
        #expect(sample.sortedKeys.map(sample.name(of:)) == ["exits", "kvm_exit", "kvm_exit(HLT)"])
        #expect(sample.sortedKeys.map(sample.label) == ["exits", "kvm_exit", "kvm_exit(HLT)"])
    }

    @Test func aReadingCarriesEverythingOfItsSample() throws {
        let source = ScriptedSource("qmp")
        source.next = Reading(
            families: ["pages_4k": MetricFamily("pages_4k", kind: .gauge, unit: .pages, help: "p", origin: .kvmStatistic)],
            values: ["pages_4k": 512],
            guestValues: [EventID("pages_4k", guest: 42): 512],
            histograms: ["halt_wait_hist": Histogram(scale: .log2, buckets: [1, 2])],
            guestNames: [42: "web1"], warnings: ["said once"])
        let stats = Stats(sources: [source])
        let sample = try stats.read(ReadRequest(perGuest: true))
        let key = EventID("pages_4k", source: "qmp")
        #expect(sample.isLevel(key) && sample.family(of: key)?.unit == .pages)
        #expect(sample.guestValues[EventID("pages_4k", guest: 42, source: "qmp")] == 512)
        #expect(sample.histograms[EventID("halt_wait_hist", source: "qmp")]?.buckets == [1, 2])
        #expect(sample.guestNames == [42: "web1"])
        #expect(stats.takeWarnings() == ["said once"] && stats.takeWarnings().isEmpty)
    }

    @Test func rowsNoSourceReportsAnyMoreAreDropped() throws {
        let source = ScriptedSource("debugfs")
        source.next = Reading(values: [.guestTotal(10): 4, .guestTotal(20): 6])
        let stats = Stats(sources: [source])
        _ = try stats.read(ReadRequest(byGuest: true))
        source.next = Reading(values: [.guestTotal(20): 9])
        let sample = try stats.read(ReadRequest(byGuest: true))
        #expect(sample.values(of: "debugfs") == [.guestTotal(20): EventStat(value: 9, delta: 3)])
    }
}
