import Foundation
import KVMBuiltins
import KVMCore
import KVMSources
import KVMTestSupport
import Testing

/// Plugins stand alone: everything registered is exercised here without naming it, and a
/// source and a format that exist only in the test fixture work in every mode.
@Suite struct PluginTests {
    static let fixture = Kernel.productsDirectory + "/kvmstat-plugin-fixture"

    @Test func aSourceAndAFormatFromOutsideWorkInEveryMode() throws {
        let sources = try run(Self.fixture, ["--source", "help"])
        #expect(sources.status == 0 && sources.stdout.contains("  counting    counters that count reads"))
        let formats = try run(Self.fixture, ["--format", "help"])
        // Names in one column, as wide as the longest name needs.
        let width = (Builtins.plugins.formats.names + ["tsv"]).map(\.count).max()! + 2
        #expect(formats.status == 0 && formats.stdout.contains("  " + "tsv".padding(toLength: width, withPad: " ", startingAt: 0)
            + "tab-separated values"), "\(formats.stdout)")
        let fields = try run(Self.fixture, ["--source", "counting", "-f", "help"])
        #expect(fields.stdout == "  apples\n  basket\n  pears\n  plums\n", "\(fields.stdout)\(fields.stderr)")

        // Batch: two reads a second apart, children under upstream's rule.
        let batch = try run(Self.fixture, ["--source", "counting", "--format", "tsv", "-1"])
        #expect(batch.status == 0, "\(batch.stderr)")
        #expect(batch.stdout == "apples\t2\t1\nbasket\t12\t1\npears\t4\t2\nplums\t6\t3\nplums(RIPE)\t6\t3\n")
        // A filter selects a child and, with it, its parent.
        let filtered = try run(Self.fixture, ["--source", "counting", "-f", "plums\\(", "-1"])
        #expect(filtered.stdout.contains("plums(RIPE)") && filtered.stdout.contains("plums ")
                && !filtered.stdout.contains("apples"), "\(filtered.stdout)")

        // Log: a banner, then a record per sample.
        let log = try BackgroundKvmstat(["--source", "counting", "--format", "tsv", "-l", "-s", "0.1"],
                                        executable: Self.fixture)
        #expect(log.waitForLines(4))
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.first == "time\tapples\tbasket\tpears\tplums\tplums(RIPE)")
        #expect(lines.count >= 4)
        for record in lines.dropFirst() { #expect(record.hasSuffix("\t1\t1\t2\t3\t3"), "\(record)") }

        // jsonl and Prometheus take what the numbers are from the source's descriptions: a
        // counter, a gauge in kilograms (base unit grams), a histogram in milliseconds.
        let json = try run(Self.fixture, ["--source", "counting", "--format", "jsonl", "-1"])
        #expect(json.stdout.contains(#""ripeness": {"scale": "log2", "unit": "seconds", "base": 10, "exponent": -3, "buckets": [2, 4, 1]}"#),
                "\(json.stdout)")
        let exposition = try run(Self.fixture, ["--source", "counting", "--format", "prometheus", "-1"]).stdout
        for line in ["# TYPE kvm_fruit_apples_total counter", "kvm_fruit_apples_total 2",
                     "# TYPE kvm_fruit_basket_grams gauge", "kvm_fruit_basket_grams 12000",
                     "kvm_fruit_plums_total 6", #"kvm_fruit_plums_by_child_total{child="RIPE"} 6"#,
                     "# TYPE kvm_fruit_ripeness_seconds histogram", #"kvm_fruit_ripeness_seconds_bucket{le="0.001"} 6"#] {
            #expect(exposition.split(separator: "\n").contains(Substring(line)), "\(line) in \(exposition)")
        }

        // The endpoint serves the fixture's source in every format that names a media type,
        // the fixture's own format included, chosen by Accept.
        let port = try HTTPClient.freePort()
        let server = try BackgroundKvmstat(["--source", "counting", "--listen", "\(port)", "-s", "0.1"],
                                           executable: Self.fixture)
        defer {
            server.signal(SIGINT)
            _ = server.finish()
        }
        var scraped = ""
        #expect(waitUntil {
            scraped = (try? HTTPClient.get(port: port, path: "/metrics"))?.body ?? ""
            return scraped.contains("kvm_fruit_apples_total")
        }, "\(scraped)")
        #expect(scraped.contains("kvmstat_samples_total") && scraped.contains("# TYPE kvm_fruit_basket_grams gauge"))
        let tsv = try HTTPClient.get(port: port, path: "/metrics", headers: ["Accept: text/tab-separated-values"])
        #expect(tsv.head.contains("Content-Type: text/tab-separated-values"), "\(tsv.head)")
        #expect(tsv.body.split(separator: "\n").contains { $0.hasPrefix("apples\t") }, "\(tsv.body)")
        if PrometheusBinaries.installed {
            let checked = try run("/bin/bash", ["-c", "'\(Self.fixture)' --source counting -1 --format prometheus | "
                + "\(PrometheusBinaries.promtool) check metrics"])
            #expect(checked.status == 0, "\(checked.stdout)\(checked.stderr)")
        }

        // The real kvmstat knows neither.
        let plain = try kvmstat("--source", "counting", "-1")
        #expect(plain.status == 2 && plain.stderr.contains("unknown source 'counting'"))
    }

    @Test func everyRegisteredFormatWritesBatchAndLog() throws {
        let tree = try FakeTree(fields: ["exits", "halt_exits"])
        let names = Builtins.plugins.formats.names
        let help = try kvmstat("--format", "help")
        for name in names {
            #expect(help.stdout.contains("  \(name) "), "\(name) in --format help")
            let batch = try run(kvmstatBinary, ["-d", "-1", "-i", "--format", name], environment: tree.environment)
            #expect(batch.status == 0 && batch.stdout.contains("exits"), "\(name): \(batch.stderr)")
            let log = try BackgroundKvmstat(["-d", "-l", "-s", "0.1", "--format", name], environment: tree.environment)
            #expect(log.waitForLines(2), "\(name)")
            log.signal(SIGINT)
            let result = log.finish()
            #expect(result.status == 0 && result.stdout.split(separator: "\n").count >= 2, "\(name): \(result.stderr)")
        }
    }

    @Test func everyRegisteredSourceDescribesItself() throws {
        let registry = Builtins.plugins.sources
        #expect(Set(registry.names).count == registry.names.count, "names are unique")
        #expect(!registry.defaultCandidates.isEmpty, "something is the default")
        let help = try kvmstat("--source", "help")
        let nowhere = SourceConfiguration(paths: SystemPaths(root: "/nonexistent/kvmstat"),
                                          architecture: Builtins.plugins.architectures.architecture(named: "x86")!)
        for source in registry.entries {
            #expect(help.stdout.contains("  \(source.name) "), "\(source.name) in --source help")
            #expect(!source.summary.isEmpty && !source.enabledPhrase.isEmpty)
            // A host without what it needs gets a reason, not a crash. (A source that asks a
            // daemon by URI needs no host files: its missing library is LibvirtFaultTests'.)
            let reason = source.unavailableReason(nowhere)
            #expect(reason != nil || source.reads.contains(.connect), "\(source.name) on an empty host")
        }
    }

    @Test func archOverrideWorksInEveryMode() throws {
        let tree = try FakeTree(fields: ["exits", "instruction_sigp", "exit_instruction"])
        // debugfs with another machine's child rules (s390's instruction_* under exit_instruction).
        let s390 = try run(kvmstatBinary, ["--arch", "s390", "-d", "-1", "-i", "-f", "instruction_sigp"],
                           environment: tree.environment)
        #expect(s390.status == 0, "\(s390.stderr)")
        #expect(s390.stdout.contains("instruction_sigp") && s390.stdout.contains("exit_instruction"))
        let unknown = try run(kvmstatBinary, ["--arch", "mips", "-d", "-1"], environment: tree.environment)
        #expect(unknown.status == 2 && unknown.stderr.contains("unknown architecture 'mips'"))
    }

    @Test(.enabled(if: Kernel.available, realKernelNeeded))
    func anotherMachinesArchitectureIsRefusedForTracepointsWithTheReason() throws {
        let host = HostFacts.read().machine
        let foreign = Builtins.plugins.architectures.names.filter { name in
            let arch = Builtins.plugins.architectures.architecture(named: name)!
            return !Builtins.plugins.architectures.architecture(arch, runsOn: host)
        }
        #expect(!foreign.isEmpty)
        for name in foreign {
            // Asked for: one line saying why.
            let result = try kvmstat("--arch", name, "-t", "-1")
            #expect(result.status == 1, "\(name)")
            #expect(result.stderr.hasPrefix("kvmstat: tracepoints cannot be counted for --arch \(name)"), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1)
            // By default: the reason, and upstream's fallback to debugfs with that machine's rules.
            let fallback = try kvmstat("--arch", name, "-1")
            #expect(fallback.status == 0, "\(name): \(fallback.stderr)")
            #expect(fallback.stderr.contains("tracepoints cannot be counted for --arch \(name)")
                    && fallback.stderr.contains("Falling back to debugfs statistics!"))
        }
    }

    /// Every usage error and bad input is found before any source opens (strace shows no
    /// perf_event_open at all).
    @Test(.enabled(if: Kernel.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/strace"),
                   "needs real KVM and strace"))
    func noPerfEventIsOpenedBeforeAUsageError() throws {
        let trace = NSTemporaryDirectory() + "kvmstat-strace-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: trace) }
        let cases: [[String]] = [
            ["--format", "csv"], ["-1", "-s", "0.05"], ["-1", "-c"], ["-1", "-z"], ["-1", "-f", "kvm_("],
            ["-1", "-p", "999999999"], ["--format", "bogus", "-1"], ["--source", "nope", "-1"],
            ["-1", "-g", "no-such-guest"], ["-L", "/nonexistent/dir/x.log"], ["-1", "--arch", "mips"],
        ]
        for arguments in cases {
            let result = try run("/usr/bin/strace", ["-f", "-qq", "-e", "trace=perf_event_open", "-o", trace,
                                                     kvmstatBinary] + arguments)
            #expect(result.status != 0, "\(arguments)")
            let calls = (try? String(contentsOfFile: trace, encoding: .utf8)) ?? ""
            #expect(!calls.contains("perf_event_open"), "\(arguments): \(calls.prefix(200))")
        }
    }
}
