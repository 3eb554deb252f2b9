import KVMCore
import KVMSources

/// kvmstat's own metrics on the endpoint, as a well-behaved exporter exports its own:
/// `kvmstat_build_info`, samples taken and how long each took, scrapes and how long each
/// took to answer, each source's health, errors by kind, and the process's resources
/// (`process_*`, as client libraries name them). Added to each sample as values of their own
/// families (source `kvmstat`), so every format served shows them. Not in the textfile:
/// node_exporter exports its own `process_*` there.
struct SelfMetrics {
    static let source = "kvmstat"
    let version: String
    let architecture: String
    private(set) var samples: UInt64 = 0
    /// Durations of samples taken, log2 buckets of microseconds.
    private var sampleDurations = SelfMetrics.durationHistogram()

    init(version: String = KVMStatVersion.version, architecture: String) {
        self.version = version
        self.architecture = architecture
    }

    /// An empty histogram of durations: bucket i holds [2^(i-1), 2^i) µs, up to ~67 s.
    static func durationHistogram() -> Histogram {
        Histogram(scale: .log2, unit: "seconds", base: 10, exponent: -6, buckets: Array(repeating: 0, count: 27),
                  sum: 0)
    }

    /// Adds one duration (seconds) to a duration histogram.
    static func record(_ seconds: Double, in histogram: inout Histogram) {
        let microseconds = UInt64(max(0, min(seconds, 1e6)) * 1e6)
        let index = min(microseconds == 0 ? 0 : 64 - microseconds.leadingZeroBitCount, histogram.buckets.count - 1)
        histogram.buckets[index] &+= 1
        histogram.sum = (histogram.sum ?? 0) &+ microseconds
    }

    mutating func sampleTaken(seconds: Double) {
        samples &+= 1
        Self.record(seconds, in: &sampleDurations)
    }

    static let samplesFamily = MetricFamily("samples", kind: .counter, unit: .none, help: "Samples kvmstat has taken",
                                            origin: .program)

    /// The families and values of kvmstat's own metrics, added to `sample`.
    func add(to sample: inout Sample, health: [String: Stats.SourceHealth], server: MetricsServer.Counters,
             resources: ProcessResources?) {
        func add(_ name: String, _ value: UInt64, previous: UInt64? = nil, _ family: MetricFamily) {
            sample.add(EventStat(value: value, previous: previous ?? value), for: EventID(name, source: Self.source),
                       family: family)
        }
        func labelled(_ family: String, _ kind: MetricKind, _ unit: MetricUnit, _ help: String, origin: MetricOrigin = .program,
                      _ labels: [MetricLabel]) -> (String, MetricFamily) {
            let name = family + "(" + labels.map(\.value).joined(separator: ",") + ")"
            return (name, MetricFamily(name, kind: kind, unit: unit, help: help, origin: origin,
                                       dimension: MetricDimension(family: family, help: help, labels: labels)))
        }
        add("samples", samples, previous: samples &- 1, Self.samplesFamily)
        let (build, buildFamily) = labelled("build_info", .gauge, .none,
                                            "kvmstat's version and the architecture it reads KVM for (always 1)",
                                            [MetricLabel("version", version), MetricLabel("arch", architecture)])
        add(build, 1, buildFamily)
        for (source, state) in health {
            let (up, upFamily) = labelled("source_up", .gauge, .none,
                                          "Whether the source's last read succeeded (1) or failed (0)",
                                          [MetricLabel("source", source)])
            add(up, state.up ? 1 : 0, upFamily)
            if let last = state.lastSuccess {
                let (when, whenFamily) = labelled("source_last_success_timestamp_ns", .gauge, .nanoseconds,
                                                  "When the source's last successful read was taken, since the epoch",
                                                  [MetricLabel("source", source)])
                add(when, UInt64(max(0, last.seconds)) &* 1_000_000_000 &+ UInt64(max(0, last.nanoseconds)), whenFamily)
            }
        }
        let failures = health.values.reduce(UInt64(0)) { $0 &+ $1.failures }
        for (kind, count) in [("source_read", failures), ("http_client", server.clientErrors),
                              ("http_server", server.serverErrors)] {
            let (name, family) = labelled("errors", .counter, .none,
                                          "Errors by kind: a source's failed read, a request kvmstat refused (4xx) or could not answer (5xx)",
                                          [MetricLabel("kind", kind)])
            add(name, count, family)
        }
        sample.histograms[EventID("sample_duration", source: Self.source)] = sampleDurations
        sample.families[Self.source, default: [:]]["sample_duration"] = MetricFamily(
            "sample_duration", kind: .histogram, unit: .seconds, help: "How long taking a sample took", origin: .program)
        sample.histograms[EventID("scrape_duration", source: Self.source)] = server.scrapeDurations
        sample.families[Self.source, default: [:]]["scrape_duration"] = MetricFamily(
            "scrape_duration", kind: .histogram, unit: .seconds,
            help: "How long answering a scrape of /metrics took", origin: .program)
        // Rendering happens once a sample per format asked for, not once a scrape: these say
        // what a big host's exposition costs to make (divided by its series: per series).
        sample.histograms[EventID("render_cpu", source: Self.source)] = server.renderCPU
        sample.families[Self.source, default: [:]]["render_cpu"] = MetricFamily(
            "render_cpu", kind: .histogram, unit: .seconds,
            help: "CPU time making a sample's exposition in a format took (once a sample per format scrapers ask for)",
            origin: .program)
        sample.histograms[EventID("compress_cpu", source: Self.source)] = server.compressCPU
        sample.families[Self.source, default: [:]]["compress_cpu"] = MetricFamily(
            "compress_cpu", kind: .histogram, unit: .seconds,
            help: "CPU time gzipping a sample's exposition took (once a sample, when scrapers accept gzip)",
            origin: .program)
        guard let resources else { return }
        let process: [(String, UInt64, MetricKind, MetricUnit, String)] = [
            ("cpu_ns", resources.cpuNanoseconds, .counter, .nanoseconds, "User and system CPU time spent"),
            ("resident_memory", resources.residentBytes, .gauge, .bytes, "Resident memory size"),
            ("virtual_memory", resources.virtualBytes, .gauge, .bytes, "Virtual memory size"),
            ("open_fds", resources.openDescriptors, .gauge, .none, "Number of open file descriptors"),
            ("max_fds", resources.maxDescriptors, .gauge, .none, "Maximum number of open file descriptors"),
            ("start_time_ns", resources.startTimeNanoseconds, .gauge, .nanoseconds,
             "Start time of the process since the epoch"),
        ]
        for (name, value, kind, unit, help) in process {
            add(name, value, MetricFamily(name, kind: kind, unit: unit, help: help, origin: .process))
        }
    }
}
