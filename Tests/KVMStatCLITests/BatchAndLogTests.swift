import Foundation
import KVMTestSupport
import Testing

/// Batch and log modes of the built binary against the real workload.
@Suite(.enabled(if: Kernel.available, realKernelNeeded))
struct BatchAndLogTests {
    static let events = "kvm_userspace_exit|kvm_pio"

    /// `kvmstat -1 -p PID` while 2 vCPUs × 2000 iterations run: upstream's lines, exactly.
    @Test func batchTextExactCounts() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 2000)
        let kvmstat = try BackgroundKvmstat(["-1", "-p", "\(workload.pid)"])
        kvmstat.waitUntilCounting()
        try workload.run()
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains(Self.line("kvm_userspace_exit(HLT)", 4000)))
        #expect(lines.contains(Self.line("kvm_userspace_exit(IO)", 8000)))
        #expect(lines.contains(Self.line("kvm_pio", 8000)))
        // Every line is `%-42s%10d%10d`, and lines are sorted by upstream's keys.
        for line in lines { #expect(line.count == 62, "\(line)") }
        let names = lines.map { String($0.prefix(42)).trimmingCharacters(in: .whitespaces) }
        #expect(names.contains("kvm_userspace_exit(MMIO)"))
        #expect(names.firstIndex(of: "kvm_userspace_exit")! < names.firstIndex(of: "kvm_userspace_exit(HLT)")!)
    }

    static func line(_ name: String, _ count: Int) -> String {
        name.padding(toLength: 42, withPad: " ", startingAt: 0)
            + String(repeating: " ", count: 10 - String(count).count) + "\(count)"
            + String(repeating: " ", count: 10 - String(count).count) + "\(count)"
    }

    @Test func batchCSVAndJSONLines() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 1500)
        let csv = try BackgroundKvmstat(["-1", "--format", "csv", "-p", "\(workload.pid)",
                                         "-f", Self.events])
        csv.waitUntilCounting()
        try workload.run()
        let csvResult = csv.finish()
        #expect(csvResult.status == 0, "\(csvResult.stderr)")
        let rows = csvResult.stdout.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        #expect(rows.count == 2)
        let header = try #require(rows.first)
        let values = try #require(rows.last)
        #expect(header.first == "timestamp" && header.count == values.count)
        let byName = Dictionary(uniqueKeysWithValues: zip(header, values))
        #expect(byName["kvm_userspace_exit(HLT)"] == "1500")
        #expect(byName["kvm_pio"] == "3000")

        let jsonl = try BackgroundKvmstat(["-1", "--format", "jsonl", "-p", "\(workload.pid)",
                                           "-f", Self.events])
        jsonl.waitUntilCounting()
        try workload.run()
        let jsonResult = jsonl.finish()
        #expect(jsonResult.status == 0)
        let objects = jsonResult.stdout.split(separator: "\n")
        #expect(objects.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(objects[0].utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["timestamp", "interval_s", "events"])
        let events = try #require(object["events"] as? [String: [String: Any]])
        let hlt = try #require(events["kvm_userspace_exit(HLT)"])
        #expect(hlt["total"] as? Int == 1500 && hlt["delta"] as? Int == 1500)
        #expect(hlt["parent"] as? String == "kvm_userspace_exit")
        #expect(events["kvm_pio"]?["parent"] == nil)
        // Children add up to their parent.
        let parent = try #require(events["kvm_userspace_exit"]?["total"] as? Int)
        let children = events.filter { $0.value["parent"] as? String == "kvm_userspace_exit" }
            .compactMap { $0.value["total"] as? Int }.reduce(0, +)
        #expect(parent == children && parent == 4500)
        let stamp = try #require(object["timestamp"] as? String)
        #expect(stamp.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$"#,
                            options: .regularExpression) != nil)
        #expect(object["interval_s"] is Double || object["interval_s"] is Int)
    }

    @Test func logCountsAddUpAndSkipZero() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 1000)
        let kvmstat = try BackgroundKvmstat(["-l", "-c", "-z", "-s", "0.2", "-p", "\(workload.pid)",
                                             "-f", "kvm_pio"])
        kvmstat.waitUntilCounting()
        // The records' own sums say when a run has been logged.
        func logged(_ text: String) -> Int {
            text.split(separator: "\n").dropFirst().compactMap { Int($0.split(separator: ",").last!) }.reduce(0, +)
        }
        try workload.run()
        #expect(kvmstat.waitForOutput { logged($0) >= 2000 })
        try workload.run()
        #expect(kvmstat.waitForOutput { logged($0) >= 4000 })
        kvmstat.signal(SIGINT)
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.first == "timestamp,kvm_pio")
        let deltas = lines.dropFirst().map { Int($0.split(separator: ",").last!)! }
        #expect(deltas.reduce(0, +) == 4000)
        #expect(!deltas.contains(0), "-z skips all-zero records")
        #expect(deltas.count <= 4, "two runs, each within at most two samples")
    }

    @Test func logJSONLinesAddUp() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 700)
        let kvmstat = try BackgroundKvmstat(["-l", "--format", "jsonl", "-s", "0.2", "-p",
                                             "\(workload.pid)", "-f", Self.events])
        kvmstat.waitUntilCounting()
        try workload.run()
        // Logged once a record's running total has every exit.
        #expect(kvmstat.waitForOutput {
            $0.contains(#""kvm_userspace_exit(HLT)": {"total": 1400"#) && $0.filter { $0 == "\n" }.count >= 2
        })
        kvmstat.signal(SIGINT)
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count >= 2)
        var sum = 0
        var lastTotal = 0
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let events = try #require(object["events"] as? [String: [String: Any]])
            let hlt = try #require(events["kvm_userspace_exit(HLT)"])
            sum += try #require(hlt["delta"] as? Int)
            lastTotal = try #require(hlt["total"] as? Int)
            let interval = try #require(object["interval_s"] as? Double)
            #expect(interval > 0.1 && interval < 1.0)
        }
        #expect(sum == 1400 && lastTotal == 1400)
    }

    @Test func sighupRotationLosesNothing() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 500)
        let path = NSTemporaryDirectory() + "kvmstat-\(UUID().uuidString).log"
        defer {
            try? FileManager.default.removeItem(atPath: path)
            try? FileManager.default.removeItem(atPath: path + ".1")
        }
        func records(_ file: String) -> (banners: Int, sum: Int) {
            let lines = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n")
            let banners = lines.filter { $0 == "kvm_pio " }.count
            let sum = lines.filter { $0 != "kvm_pio " }.compactMap { Int($0.split(separator: " ").last!) }
                .reduce(0, +)
            return (banners, sum)
        }
        let kvmstat = try BackgroundKvmstat(["-L", path, "-s", "0.2", "-p", "\(workload.pid)",
                                             "-f", "kvm_pio"])
        kvmstat.waitUntilCounting()
        try workload.run()
        #expect(waitUntil { records(path).sum == 1000 })
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        kvmstat.signal(SIGHUP)
        // The new file's banner says the signal was taken.
        #expect(waitUntil { records(path).banners == 1 })
        try workload.run()
        #expect(waitUntil { records(path).sum == 1000 })
        try workload.run()
        #expect(waitUntil { records(path).sum == 2000 })
        kvmstat.signal(SIGINT)
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let old = records(path + ".1")
        let new = records(path)
        #expect(old.banners == 1 && new.banners == 1)
        #expect(old.sum == 1000)
        #expect(old.sum + new.sum == 3000)
    }

    @Test func signalsOtherThanInterruptEndAsUpstreamEnds() throws {
        // SIGHUP reopens only a log file; with -l, and SIGTERM always, end by the signal.
        let hup = try BackgroundKvmstat(["-l", "-s", "0.2", "-f", "kvm_pio"])
        usleep(500_000)
        hup.signal(SIGHUP)
        let hupResult = hup.finish()
        #expect(hupResult.status == SIGHUP && hup.process.terminationReason == .uncaughtSignal)
        let term = try BackgroundKvmstat(["-l", "-s", "0.2", "-f", "kvm_pio"])
        usleep(500_000)
        term.signal(SIGTERM)
        _ = term.finish()
        #expect(term.process.terminationReason == .uncaughtSignal)
        #expect(term.process.terminationStatus == SIGTERM)
    }

    @Test func closedPipeEndsQuietly() throws {
        let shell = try run("/bin/sh", ["-c", "'\(kvmstatBinary)' -l -s 0.1 -f kvm_pio | head -3; echo status=${PIPESTATUS:-0}"])
        let lines = shell.stdout.split(separator: "\n")
        #expect(lines.count == 4)
        #expect(lines.first == "kvm_pio ")
        #expect(shell.stderr.isEmpty, "\(shell.stderr)")
    }

    @Test func fieldHelpListsEvents() throws {
        let result = try kvmstat("-f", "help")
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("  kvm_pio") && lines.contains("  kvm_userspace_exit"))
        #expect(lines.allSatisfy { $0.hasPrefix("  ") && !$0.contains("(") })
        #expect(lines == lines.sorted())
        let both = try kvmstat("-f", "help", "-d", "-t")
        #expect(both.stdout.contains("  pages_4k\n") && both.stdout.contains("  kvm_pio\n"))
    }

    @Test func debugfsLogKeepsGoingWhileVMsComeAndGo() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 10)
        let kvmstat = try BackgroundKvmstat(["-d", "-l", "-s", "0.1", "-p", "\(workload.pid)"])
        usleep(300_000)
        try workload.addVMs(2)
        usleep(300_000)
        try workload.destroyVM()
        try workload.destroyVM()
        try workload.destroyVM()
        usleep(300_000)
        try workload.addVMs(1)
        usleep(300_000)
        kvmstat.signal(SIGINT)
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count > 8)
        #expect(lines.first?.contains("pages_4k") == true)
        // The lockdown report, once.
        #expect(result.stderr.components(separatedBy: "lockdown").count <= 2)
    }
}
