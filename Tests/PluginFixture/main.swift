import KVMBuiltins
import KVMCore
import KVMFormats
import KVMSources
import KVMStatApp

// kvmstat with the built-ins plus a source and a format defined only here, registered the way
// a contributor registers theirs: the tests run it to show that a plugin stands alone — in
// every mode, the endpoint included — with no edit anywhere else.

/// An orchard that needs nothing from the host. Each read: the counter `apples` grows by 1,
/// `pears` by 2, the child `plums(RIPE)` and its parent `plums` by 3; the gauge `basket` (in
/// kilograms) holds 10 + reads; the histogram `ripeness` (milliseconds, log2 buckets) holds
/// [reads, 2 × reads, 1]. Its counts are kept by the public bookkeeping (`CounterBook`).
final class CountingSource: StatSource {
    static let fieldNames = ["apples", "basket", "pears", "plums", "plums(RIPE)"]

    static let description = SourceDescription(
        name: "counting", summary: "counters that count reads (a test fixture)",
        enabledPhrase: "counting", byGuest: false, reads: [.fields], defaultRank: nil,
        unavailableReason: { _ in nil },
        fields: { _ in fieldNames },
        make: { configuration in CountingSource(configuration) })

    static let families: [String: MetricFamily] = [
        "apples": MetricFamily("apples", kind: .counter, help: "Apples picked", origin: .other(namespace: "fruit")),
        "pears": MetricFamily("pears", kind: .counter, help: "Pears picked", origin: .other(namespace: "fruit")),
        "plums": MetricFamily("plums", kind: .counter, help: "Plums picked", origin: .other(namespace: "fruit")),
        "basket": MetricFamily("basket", kind: .gauge, unit: MetricUnit("grams", exponent: 3),
                               help: "What the basket holds now", origin: .other(namespace: "fruit")),
        "ripeness": MetricFamily("ripeness", kind: .histogram, unit: MetricUnit("seconds", exponent: -3),
                                 help: "How long fruit took to ripen", origin: .other(namespace: "fruit")),
    ]

    let name = "counting"
    var supportsByGuest: Bool { false }
    private let architecture: any Architecture
    private var wanted: [Int]
    private var reads: UInt64 = 0
    /// The orchard is one member of the book, counted from zero.
    private var book = CounterBook<String, EventID>()

    init(_ configuration: SourceConfiguration) {
        architecture = configuration.architecture
        wanted = configuration.fieldFilter.select(Self.fieldNames, parentOf: architecture.tracepointParent(of:))
        book.admit("orchard", guest: 0, countsFromZero: true)
    }

    func availableFields() -> [String] { Self.fieldNames }

    func updateFields(_ filter: FieldFilter?) throws(SourceError) {
        wanted = filter.select(Self.fieldNames, parentOf: architecture.tracepointParent(of:))
    }

    func setPid(_ pid: Int) throws(SourceError) {}

    func read(_ request: ReadRequest) throws(SourceError) -> Reading {
        reads += 1
        var reading = Reading(families: Self.families)
        let raw: [String: UInt64] = ["apples": reads, "pears": 2 * reads, "plums": 3 * reads, "plums(RIPE)": 3 * reads]
        for index in wanted {
            let name = Self.fieldNames[index]
            let key = EventID(name, parent: architecture.tracepointParent(of: name))
            if name == "basket" {
                reading.values[key] = 10 + reads
                continue
            }
            book.count(raw[name]!, key, of: "orchard")
            reading.values[key] = book.counted(key, of: "orchard")
        }
        reading.histograms[EventID("ripeness")] = Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -3,
                                                             buckets: [reads, 2 * reads, 1])
        return reading
    }

    func reset() throws(SourceError) {
        book.reset { _ in true }
    }

    func close() {}
}

/// Tab-separated values: a `time` header, then the stamp and the deltas; served to a client
/// that asks for `text/tab-separated-values`.
struct TSVFormat: Format {
    var name: String { "tsv" }
    var repeatsBannerInFile: Bool { false }
    var mediaTypes: [MediaType] { [MediaType("text/tab-separated-values", quality: 0.2)] }

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
