import KVMBuiltins
import KVMCore
import KVMFormats
import KVMSources
import KVMStatApp

// kvmstat with the built-ins plus a source and a format defined only here, registered the way
// a contributor registers theirs: the tests run it to show that a plugin stands alone.

/// Needs nothing from the host: each read, `apples` grows by 1, `pears` by 2, the child
/// `plums(RIPE)` by 3 and its parent `plums` by 3.
final class CountingSource: StatSource {
    static let fieldNames = ["apples", "pears", "plums", "plums(RIPE)"]

    static let description = SourceDescription(
        name: "counting", summary: "counters that count reads (a test fixture)",
        enabledPhrase: "counting", byGuest: false, reads: [.fields], defaultRank: nil,
        unavailableReason: { _ in nil },
        fields: { _ in fieldNames },
        make: { configuration in CountingSource(configuration) })

    let name = "counting"
    var supportsByGuest: Bool { false }
    private let architecture: any Architecture
    private var wanted: [Int]
    private var reads: UInt64 = 0

    init(_ configuration: SourceConfiguration) {
        architecture = configuration.architecture
        wanted = configuration.fieldFilter.select(Self.fieldNames, parentOf: architecture.tracepointParent(of:))
    }

    func availableFields() -> [String] { Self.fieldNames }

    func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        wanted = filter.select(Self.fieldNames, parentOf: architecture.tracepointParent(of:))
    }

    func setPid(_ pid: Int) throws(SourceError) {}

    static let families = Dictionary(uniqueKeysWithValues: ["apples", "pears", "plums"].map {
        ($0, MetricFamily($0, kind: .counter, help: "\($0) counted", origin: .other(namespace: "fruit")))
    })

    func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        reads += 1
        let steps: [UInt64] = [1, 2, 3, 3]
        var reading = Reading(families: Self.families)
        for index in wanted {
            let name = Self.fieldNames[index]
            reading.values[EventID(name, parent: architecture.tracepointParent(of: name))] = reads * steps[index]
        }
        return reading
    }

    func reset() throws(SourceError) { reads = 0 }
    func close() {}
}

/// Tab-separated values: a `time` header, then the stamp and the deltas.
struct TSVFormat: Format {
    var name: String { "tsv" }
    var repeatsBannerInFile: Bool { false }

    func banner(keys: [EventID], of sample: Sample) -> String? {
        "time" + keys.map { "\t" + sample.name(of: $0) }.joined()
    }

    func record(_ sample: Sample, keys: [EventID]) -> String {
        sample.time.logStamp + keys.map { "\t" + String(sample.values[$0]?.delta ?? 0) }.joined()
    }

    func batch(_ sample: Sample) -> String {
        var out = ""
        for key in sample.sortedKeys {
            let stat = sample.values[key]!
            out += sample.name(of: key) + "\t" + String(stat.value) + "\t" + String(stat.delta) + "\n"
        }
        return out
    }
}

var plugins = Builtins.plugins
plugins.sources.register(CountingSource.description)
plugins.formats.register(TSVFormat(), summary: "tab-separated values (a test fixture)")
KVMStat.main(plugins: plugins)
