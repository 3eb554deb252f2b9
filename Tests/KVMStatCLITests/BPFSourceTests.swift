import Foundation
import KVMTestSupport
import Testing

/// `--source bpf` on the real kernel: exact counts (the workload does 2 `kvm_pio` and one
/// `kvm_userspace_exit(HLT)` per iteration and vCPU, and 2 `kvm_userspace_exit(IO)`), per
/// guest without cgroups, and nothing of kvmstat's left in the kernel afterwards.
@Suite(.serialized, .enabled(if: Kernel.available, realKernelNeeded))
struct BPFSourceTests {
    static let events = "kvm_userspace_exit|kvm_pio"

    /// The kernel's BPF programs now, by id (bpftool's view, without bpftool: the ids the
    /// kernel hands out through BPF_PROG_GET_NEXT_ID are what `/proc/*/fdinfo` names).
    static func programsOfKvmstat() -> Int {
        // Every descriptor of every process that is a kvmstat BPF program (prog_name).
        var count = 0
        let processes = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for process in processes where Int(process) != nil {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process)/fdinfo")) ?? []
            for fd in fds {
                let info = (try? String(contentsOfFile: "/proc/\(process)/fdinfo/\(fd)", encoding: .utf8)) ?? ""
                if info.contains("prog_type:") && info.contains("prog_tag:") { count += 1 }
            }
        }
        return count
    }

    @Test func batchExactCountsAsTheTracepointSource() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 2000)
        let kvmstat = try BackgroundKvmstat(["-1", "--source", "bpf", "-p", "\(workload.pid)"])
        kvmstat.waitUntilCounting()
        try workload.run()
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains(BatchAndLogTests.line("kvm_userspace_exit(HLT)", 4000)), "pid \(workload.pid): \(result.stderr) \(lines.filter { !$0.hasSuffix(" 0") })")
        #expect(lines.contains(BatchAndLogTests.line("kvm_userspace_exit(IO)", 8000)))
        #expect(lines.contains(BatchAndLogTests.line("kvm_pio", 8000)))
        // Per vCPU (the workload names its threads as QEMU does): each its own share.
        for vcpu in 0..<2 {
            #expect(lines.contains(BatchAndLogTests.line("kvm_pio(vcpu\(vcpu))", 4000)), "\(lines.filter { $0.contains("vcpu") })")
            #expect(lines.contains(BatchAndLogTests.line("kvm_userspace_exit(vcpu\(vcpu))", 6000)))
        }
        for line in lines { #expect(line.count == 62, "\(line)") }
    }

    /// The screen: `x` shows per-vCPU rows, `l` the latency view (and back); without
    /// `--latency`, `l` says how to ask for it.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"), "needs tmux"))
    func screenLatencyViewAndPerVCPURows() throws {
        let name = "bpf-tui-\(getpid())"
        let workload = try startLoopingWorkload(name)
        defer { workload.terminate(); workload.waitUntilExit() }
        let pid = workload.processIdentifier
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' --source bpf --latency -p \(pid) -s 1")
        #expect(tmux.wait(for: " kvm_pio ") != nil, "\(tmux.screen())")
        tmux.send("x")
        #expect(tmux.wait { $0.contains { $0.hasPrefix("   kvm_pio(vcpu0) ") } && $0.contains { $0.hasPrefix("   kvm_pio(vcpu1) ") } }
            != nil, "\(tmux.screen())")
        tmux.send("l")
        let view = try #require(tmux.wait { lines in
            lines.contains { $0.contains("userspace_exit_latency (µs, since start or r)") }
                && lines.contains { $0.hasPrefix(" IO ") } && lines.contains { $0.hasPrefix(" HLT ") }
        }, "\(tmux.screen())")
        #expect(view.contains { $0.hasPrefix(" Reason ") && $0.contains("Samples") && $0.contains("p99") })
        let io = try #require(view.first { $0.hasPrefix(" IO ") })
        #expect((Int(io.split(separator: " ")[1]) ?? 0) > 0, "\(io)")
        #expect(!view.contains { $0.contains("CurAvg/s") })
        tmux.send("l")
        #expect(tmux.wait(for: "CurAvg/s") != nil)
        tmux.send("q")

        let plain = try TmuxSession(command: "'\(kvmstatBinary)' -p \(pid) -s 1")
        #expect(plain.wait(for: "CurAvg/s") != nil)
        plain.send("l")
        #expect(plain.wait(for: "No exit latencies are timed:") != nil, "\(plain.screen())")
        #expect(plain.screen().contains { $0.contains("--source bpf --latency") })
        plain.send("z")
        #expect(plain.wait(for: "CurAvg/s") != nil)
    }

    /// The programs pass every hit on: the tracepoint source (and perf, and kvm_stat) beside
    /// it still count exactly (a program returning 0 would hide the hits from them).
    @Test func tracepointSourceBesideItStaysExact() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 1500)
        let bpf = try BackgroundKvmstat(["-l", "--source", "bpf", "-s", "0.2", "-f", Self.events])
        bpf.waitUntilCounting()
        #expect(bpf.waitForLines(2))
        let tracepoint = try BackgroundKvmstat(["-1", "-p", "\(workload.pid)", "-f", Self.events])
        tracepoint.waitUntilCounting()
        try workload.run()
        let result = tracepoint.finish()
        bpf.signal(SIGTERM)
        _ = bpf.exit(within: 5)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains(BatchAndLogTests.line("kvm_pio", 6000)), "\(result.stdout)")
        #expect(lines.contains(BatchAndLogTests.line("kvm_userspace_exit(HLT)", 3000)))
    }

    /// Per guest without a cgroup each, guests started before and after kvmstat, one busy
    /// from the start; vCPU threads that come and go keep their counts.
    @Test func exactCountsPerGuestWithoutCGroups() throws {
        let tag = "\(getpid())-\(UUID().uuidString.prefix(6))"
        let a = try WorkloadProcess(vms: 2, vcpus: 2, iterations: 1_000, name: "bpf-a-\(tag)")
        let log = try BackgroundKvmstat(["-l", "-s", "0.2", "--source", "bpf", "--by-guest", "--format", "jsonl",
                                         "-f", "^kvm_pio$"])
        log.waitUntilCounting()
        let b = try WorkloadProcess(vcpus: 1, iterations: 3_000, name: "bpf-b-\(tag)")
        try a.run()
        try b.run()
        // Threads that come while counting: two more vCPUs in a's first VM.
        try a.addVCPUs(2)
        try a.run()
        let expectedA = 1_000 * 2 * (4 + 6)
        let rows = { (text: String) -> [String: Int] in
            guard let last = text.split(separator: "\n").last,
                  let object = try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]
            else { return [:] }
            var result: [String: Int] = [:]
            for guest in object["guests"] as? [[String: Any]] ?? [] {
                if let name = guest["name"] as? String, let total = guest["total"] as? Int { result[name] = total }
            }
            return result
        }
        #expect(log.waitForOutput(within: 20) { rows($0)["bpf-a-\(tag)"] == expectedA && rows($0)["bpf-b-\(tag)"] == 6_000 })
        b.stop()
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(rows(result.stdout)["bpf-a-\(tag)"] == expectedA, "\(result.stdout.suffix(600))")
        // b's counts stay, in its own row or the departed one.
        let last = rows(result.stdout)
        #expect(last["bpf-b-\(tag)"] == 6_000 || (last["(guests that have quit)"] ?? 0) >= 6_000, "\(last)")
    }

    /// vCPU threads that exit (a VM destroyed) keep their counts: their keys leave the
    /// kernel's map and their counts stay with their guest, exactly, sample after sample.
    @Test func exitedThreadsKeepTheirCounts() throws {
        let workload = try WorkloadProcess(vms: 2, vcpus: 2, iterations: 1000)
        let log = try BackgroundKvmstat(["-l", "-s", "0.2", "--source", "bpf", "--format", "csv", "-p", "\(workload.pid)",
                                         "-f", "^kvm_pio$"])
        log.waitUntilCounting()
        try workload.run()
        try workload.destroyVM()
        try workload.run()
        // The log's column is per interval; their sum is the total.
        let total = { (text: String) in
            text.split(separator: "\n").dropFirst().compactMap { $0.split(separator: ",").last.flatMap { Int($0) } }
                .reduce(0, +)
        }
        #expect(log.waitForOutput(within: 10) { total($0) == 4 * 1000 * 2 + 2 * 1000 * 2 })
        usleep(600_000)
        log.signal(SIGTERM)
        let result = log.finish()
        #expect(total(result.stdout) == 12_000, "\(result.stdout.suffix(400))")
    }

    /// In Prometheus a tracepoint's total stays beside its vCPUs' series, which are a family of
    /// their own (other threads and interrupts count too, so the vCPUs do not add up to it).
    @Test func prometheusKeepsTotalsBesideVCPUs() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 2, iterations: 1_000)
        let kvmstat = try BackgroundKvmstat(["-1", "--format", "prometheus", "--source", "bpf", "-p", "\(workload.pid)",
                                             "-f", "kvm_pio"])
        kvmstat.waitUntilCounting()
        try workload.run()
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = Set(result.stdout.split(separator: "\n").map(String.init))
        #expect(lines.contains("kvm_tracepoint_total{tracepoint=\"kvm_pio\"} 4000"), "\(result.stdout.prefix(1500))")
        #expect(lines.contains("kvm_tracepoint_by_vcpu_total{tracepoint=\"kvm_pio\",vcpu=\"0\"} 2000"))
        #expect(lines.contains("kvm_tracepoint_by_vcpu_total{tracepoint=\"kvm_pio\",vcpu=\"1\"} 2000"))
        #expect(lines.contains { $0.hasPrefix("kvm_guest_tracepoint_total{") && $0.hasSuffix("tracepoint=\"kvm_pio\"} 4000") })
        #expect(!lines.contains { $0.hasPrefix("kvm_tracepoint_total{") && $0.contains("vcpu=") })
    }

    /// A guest that quits leaves no series of its own behind (they would grow with every
    /// guest that ever ran); its counts stay in the host's totals.
    @Test func quitGuestsLeaveNoSeries() throws {
        let directory = NSTemporaryDirectory() + "kvmstat-bpf-quit-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/kvm.prom"
        let textfile = try BackgroundKvmstat(["-L", file, "--format", "prometheus", "--source", "bpf", "--latency",
                                              "-s", "0.2", "-f", "^kvm_pio$|^kvm_userspace_exit$"])
        defer {
            textfile.signal(SIGTERM)
            _ = textfile.exit(within: 5)
        }
        textfile.waitUntilCounting()
        let workload = try WorkloadProcess(vcpus: 1, iterations: 500)
        let pid = workload.pid
        try workload.run()
        let text = { (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }
        let series = "kvm_guest_tracepoint_total{guest=\"\",pid=\"\(pid)\",tracepoint=\"kvm_pio\"} 1000"
        #expect(waitUntil(within: 10) { text().contains(series) }, "\(text().prefix(2000))")
        #expect(text().contains("kvm_guest_userspace_exit_latency_seconds_count{guest=\"\",pid=\"\(pid)\""))
        workload.stop()
        let host = { () -> Int in
            text().split(separator: "\n").first { $0.hasPrefix("kvm_tracepoint_total{tracepoint=\"kvm_pio\"} ") }
                .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        #expect(waitUntil(within: 10) { !text().contains("pid=\"\(pid)\"") }, "\(text().prefix(2000))")
        #expect(host() >= 1000)
    }

    /// Other formats read it: CSV, and Prometheus with guest labels (the textfile).
    @Test func formatsAndPrometheusGuestLabels() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 1500, name: "bpf-prom-\(getpid())")
        let csv = try BackgroundKvmstat(["-1", "--source", "bpf", "--format", "csv", "-p", "\(workload.pid)",
                                         "-f", Self.events])
        csv.waitUntilCounting()
        try workload.run()
        let csvResult = csv.finish()
        #expect(csvResult.status == 0, "\(csvResult.stderr)")
        let rows = csvResult.stdout.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        let byName = Dictionary(uniqueKeysWithValues: zip(rows.first ?? [], rows.last ?? []))
        #expect(byName["kvm_userspace_exit(HLT)"] == "1500", "\(csvResult.stdout)")
        #expect(byName["kvm_pio"] == "3000")

        let directory = NSTemporaryDirectory() + "kvmstat-bpf-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/kvm.prom"
        let textfile = try BackgroundKvmstat(["-L", file, "--format", "prometheus", "--source", "bpf", "-s", "0.2",
                                              "-f", "^kvm_pio$"])
        textfile.waitUntilCounting()
        try workload.run()
        let series = "kvm_guest_tracepoint_total{guest=\"bpf-prom-\(getpid())\",pid=\"\(workload.pid)\",tracepoint=\"kvm_pio\"} 3000"
        #expect(waitUntil(within: 10) {
            ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").contains(series)
        }, "\((try? String(contentsOfFile: file, encoding: .utf8)) ?? "")")
        textfile.signal(SIGTERM)
        _ = textfile.exit(within: 5)
    }

    /// Ground truth for the VMM's latency: the workload stays busy 200 µs in userspace on
    /// every IO exit and not at all on HLT. Every IO exit is timed at 200 µs or more (the
    /// minimum is exact), the median within a factor of 2, and HLT's far below.
    @Test func latencyReportFindsTheVMMsKnownTime() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 500, extra: ["--io-delay-us", "200"])
        let kvmstat = try BackgroundKvmstat(["-1", "--source", "bpf", "--latency", "-p", "\(workload.pid)",
                                             "-f", "^kvm_userspace_exit$"])
        kvmstat.waitUntilCounting()
        try workload.run()
        let result = kvmstat.finish()
        #expect(result.status == 0, "\(result.stderr)")
        // `name samples samples% time% min p50 p90 p99 max mean`, times in microseconds.
        func row(_ name: String) -> [Double]? {
            result.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }.map {
                $0.split(separator: " ").dropFirst().map { Double($0.trimmingCharacters(in: CharacterSet(charactersIn: "%"))) ?? -1 }
            }
        }
        let io = try #require(row("userspace_exit_latency(IO)"), "\(result.stdout)")
        let hlt = try #require(row("userspace_exit_latency(HLT)"), "\(result.stdout)")
        // The last HLT's time in the VMM has not ended (its vCPU waits for the next run):
        // an exit is timed when the vCPU enters KVM_RUN again.
        #expect(io[0] == 1000 && hlt[0] == 499, "\(result.stdout)")
        #expect(io[3] >= 200, "minimum \(io[3]) µs")
        #expect(io[4] >= 100 && io[4] <= 400, "p50 \(io[4]) µs")
        #expect(hlt[4] < 50, "HLT's p50 \(hlt[4]) µs")
    }

    /// The latencies in Prometheus: a histogram per reason with `_sum` and `_count`.
    @Test func latencyHistogramsInPrometheus() throws {
        let workload = try WorkloadProcess(vms: 1, vcpus: 1, iterations: 300, extra: ["--io-delay-us", "50"])
        let directory = NSTemporaryDirectory() + "kvmstat-bpf-latency-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/kvm.prom"
        let textfile = try BackgroundKvmstat(["-L", file, "--format", "prometheus", "--source", "bpf", "--latency",
                                              "-p", "\(workload.pid)", "-s", "0.2", "-f", "^kvm_userspace_exit$"])
        textfile.waitUntilCounting()
        try workload.run()
        let text = { (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }
        #expect(waitUntil(within: 10) { text().contains("kvm_userspace_exit_latency_seconds_count{child=\"IO\"} 600") },
                "\(text())")
        #expect(text().contains("# TYPE kvm_userspace_exit_latency_seconds histogram"))
        // 600 IO exits of at least 50 µs each: at least 0.03 s in all, in seconds (base units).
        let sum = text().split(separator: "\n").first { $0.hasPrefix("kvm_userspace_exit_latency_seconds_sum{child=\"IO\"} ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") }
        #expect((0.03..<60).contains(sum ?? 0), "\(String(describing: sum))")
        textfile.signal(SIGTERM)
        _ = textfile.exit(within: 5)
    }

    /// Nothing is left in the kernel: no program of kvmstat's after SIGINT, SIGTERM, or SIGKILL
    /// (the kernel frees what only kvmstat's descriptors held).
    @Test(arguments: [SIGINT, SIGTERM, SIGKILL])
    func programsGoAwayOnEveryEnd(signal: Int32) throws {
        let before = Self.programsOfKvmstat()
        let log = try BackgroundKvmstat(["-l", "--source", "bpf", "-s", "0.2"])
        log.waitUntilCounting()
        #expect(log.waitForLines(2))
        #expect(Self.programsOfKvmstat() > before, "the test's premise: kvmstat holds programs")
        log.signal(signal)
        _ = log.exit(within: 5)
        #expect(waitUntil(within: 10) { Self.programsOfKvmstat() <= before })
    }

    /// Without the privilege: one line saying why, not a trap.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/capsh"), "needs capsh"))
    func withoutPrivilegeOneLine() throws {
        let result = try run("/usr/sbin/capsh", ["--drop=cap_bpf,cap_perfmon,cap_sys_admin", "--",
                                                 "-c", "exec '\(kvmstatBinary)' -1 --source bpf"])
        #expect(result.status == 1, "\(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("kvmstat: the bpf source could not"), "\(result.stderr)")
    }
}
