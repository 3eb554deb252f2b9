import Foundation
import KVMCore
import KVMTestSupport
import Testing

/// `--source libvirt` against real libvirt domains running the firmware the QMP tests use:
/// the same truths (a write is an exit, one halt), read through libvirtd. Serialized: one
/// test restarts the daemon.
@Suite(.serialized,
       .enabled(if: Kernel.required || (Kernel.available && QEMUGuest.available && LibvirtDaemon.installed),
                "needs real KVM, qemu-system-x86 and libvirt (set KVMSTAT_REQUIRE_KVM=1 to fail instead)"))
struct LibvirtSourceTests {
    init() throws { try LibvirtDaemon.ensureRunning() }

    private func kvmstat(_ arguments: [String]) throws -> RunResult { try run(kvmstatBinary, arguments) }

    /// `name total delta` batch lines of one domain, with its whole past (`-i`).
    private func batch(_ domain: LibvirtDomain, _ extra: [String] = []) throws -> [String: (Int, Int)] {
        let result = try kvmstat(["--source", "libvirt", "-1", "-i", "-p", "\(domain.pid)"] + extra)
        #expect(result.status == 0, "\(result.stderr)")
        return parseBatch(result.stdout)
    }

    @Test func exactCountsPerDomainAndVCPU() throws {
        let none = try LibvirtDomain(outs: 0, vcpus: 2)
        let many = try LibvirtDomain(outs: 10_000, vcpus: 2)
        try none.waitUntilHalted()
        try many.waitUntilHalted()
        let base = try batch(none, ["-f", "exits|halt_exits|pages_4k"])
        let counts = try batch(many, ["-f", "exits|halt_exits|pages_4k"])
        let baseExits = try #require(base["exits"]?.0)
        let exits = try #require(counts["exits"]?.0)
        // Asynchronous exits come with run time, and libvirt's machine has more devices than the
        // QMP tests' (a USB controller, an RTC ticking): 12 more than the idle domain here. The
        // exact check is the next one, against libvirt's own figure.
        #expect((baseExits + 10_000)...(baseExits + 10_000 + 3 * noise) ~= exits, "\(counts) vs \(base)")
        #expect(counts["halt_exits"]?.0 == 1 && base["halt_exits"]?.0 == 1)
        // libvirt's own figure for the same domain: what kvmstat shows is what libvirt says.
        #expect(try many.stat("vcpu.0.exits.sum") == exits)
        #expect(counts["exits(vcpu0)"]?.0 == exits && counts["exits(vcpu1)"]?.0 == 0)
        // A level (`.cur`) is shown as it is, with no rate: a halted guest's pages do not move.
        #expect(counts["pages_4k"] != nil && counts["pages_4k"]?.1 == 0, "\(counts)")
        // All domains together: at least ours.
        let all = try kvmstat(["--source", "libvirt", "-1", "-i", "-f", "halt_exits$"])
        #expect((parseBatch(all.stdout)["halt_exits"]?.0 ?? 0) >= 2, "\(all.stdout)")
    }

    @Test func jsonLinesAndGuestsByName() throws {
        let domain = try LibvirtDomain(outs: 700)
        try domain.waitUntilHalted()
        let json = try kvmstat(["--source", "libvirt", "-1", "-i", "-p", "\(domain.pid)", "--format", "jsonl",
                                "-f", "exits"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let events = try #require(object?["events"] as? [String: [String: Any]])
        #expect((events["exits"]?["total"] as? Int ?? 0) >= 700)
        #expect(events["exits(vcpu0)"]?["parent"] as? String == "exits")
        // -g finds the domain by the name libvirt gave its QEMU.
        let byName = try kvmstat(["--source", "libvirt", "-1", "-i", "-g", domain.name, "-f", "halt_exits$"])
        #expect(parseBatch(byName.stdout)["halt_exits"]?.0 == 1, "\(byName.stdout)\(byName.stderr)")
    }

    /// A domain destroyed while kvmstat runs keeps what it counted; one created again under
    /// the same name is a new guest counting from zero.
    @Test func domainsThatGoAndComeBack() throws {
        let name = "kvmstat-test-\(getpid())-again"
        var domain: LibvirtDomain? = try LibvirtDomain(outs: 1_000, name: name)
        try domain!.waitUntilHalted()
        let log = try BackgroundKvmstat(["--source", "libvirt", "-l", "-i", "-s", "0.2", "--format", "jsonl",
                                         "-f", "halt_exits$"])
        usleep(600_000)
        domain!.destroy()
        domain = nil
        usleep(600_000)
        let again = try LibvirtDomain(outs: 1_000, name: name)
        try again.waitUntilHalted()
        usleep(600_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let totals = jsonTotals(result.stdout, "halt_exits")
        #expect(totals.count >= 6 && totals == totals.sorted(), "never drops: \(totals)")
        // The first domain's halt stays counted, and the new one's is added.
        #expect((totals.last ?? 0) - (totals.first ?? 0) == 1, "\(totals)")
    }

    /// A vCPU plugged while kvmstat counts (`virsh setvcpus --live`) changes the domain's
    /// statistics' names: they are parsed again, the new vCPU gets its row, the others keep
    /// theirs.
    @Test func pluggedVCPUGetsItsRow() throws {
        let domain = try LibvirtDomain(outs: 700, vcpus: 1, maxVCPUs: 2)
        try domain.waitUntilHalted()
        let log = try BackgroundKvmstat(["--source", "libvirt", "-l", "-i", "-s", "0.2", "--format", "jsonl",
                                         "-p", "\(domain.pid)", "-f", "^exits"])
        // Counted in records, not seconds: a loaded machine cannot make the plug miss them.
        try #require(log.waitForLines(4), "kvmstat wrote no 4 records")
        let before = log.linesSoFar
        try domain.setVCPUs(2)
        log.waitForLines(before + 5)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = jsonRecords(result.stdout).compactMap { $0["events"] as? [String: [String: Any]] }
        #expect(lines.first.map { $0["exits(vcpu1)"] == nil } == true, "\(result.stdout)")
        // Its row from the sample after the plug (a second allowed for one that lands mid-sample).
        let first = try #require(lines.firstIndex { $0["exits(vcpu1)"] != nil }, "\(result.stdout)")
        #expect(first < before + 2, "row came \(first - before + 1) records after the plug")
        let last = try #require(lines.last)
        #expect(last["exits(vcpu1)"] != nil, "\(last)")
        #expect((last["exits(vcpu0)"]?["total"] as? Int ?? 0) >= 700, "\(last)")
        #expect((last["exits"]?["total"] as? Int ?? 0) >= 700, "\(last)")
    }

    /// libvirtd stopped and started again under a running kvmstat: said once, counting resumes,
    /// nothing lost.
    @Test func daemonRestartIsSaidOnceAndCountingResumes() throws {
        let domain = try LibvirtDomain(outs: 300)
        try domain.waitUntilHalted()
        let log = try BackgroundKvmstat(["--source", "libvirt", "-l", "-i", "-s", "0.2", "-p", "\(domain.pid)",
                                         "--format", "jsonl", "-f", "exits$"])
        usleep(600_000)
        try LibvirtDaemon.stop()
        usleep(800_000)
        try LibvirtDaemon.ensureRunning()
        usleep(800_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let lost = result.stderr.components(separatedBy: "lost the connection").count - 1
        #expect(lost == 1, "\(result.stderr)")
        #expect(result.stderr.contains("answers again"), "\(result.stderr)")
        let totals = jsonTotals(result.stdout, "exits")
        #expect(totals.count >= 8 && totals.allSatisfy { $0 >= 300 } && totals == totals.sorted(), "\(totals)")
    }

    /// A daemon that stops answering (SIGSTOP) costs samples their libvirt values, never a
    /// hang: said once, sampling stays on time, counting resumes when it answers again.
    @Test func silentDaemonNeverStallsSampling() throws {
        let domain = try LibvirtDomain(outs: 200)
        try domain.waitUntilHalted()
        let log = try BackgroundKvmstat(["--source", "libvirt", "-l", "-i", "-s", "0.2", "-p", "\(domain.pid)",
                                         "--format", "jsonl", "-f", "halt_exits$"])
        usleep(600_000)
        let daemon = try LibvirtDaemon.pid()
        kill(daemon, SIGSTOP)
        usleep(2_000_000)
        kill(daemon, SIGCONT)
        usleep(1_500_000)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.components(separatedBy: "did not answer").count - 1 == 1, "\(result.stderr)")
        #expect(result.stderr.contains("answers again"), "\(result.stderr)")
        let totals = jsonTotals(result.stdout, "halt_exits")
        // 4.1 s at 0.2 s: records kept coming while libvirt was silent (a sample waits 0.5 s
        // at most), and the count never dropped.
        #expect(totals.count >= 12 && totals.allSatisfy { $0 == 1 }, "\(totals)")
    }

    /// libvirt's client library allocates and frees its whole answer at every call; kvmstat
    /// keeps that much freed memory rather than give it back and fault it in again each
    /// sample (10 domains × 8 vCPUs: ≈ 100 pages a sample when given back).
    @Test func samplesFaultInNoMemoryOnceRunning() throws {
        let domains = try (0..<10).map { _ in try LibvirtDomain(outs: 0, vcpus: 8) }
        // Each destroy waits ≈ 2 s for its QEMU to end: all at once.
        defer { DispatchQueue.concurrentPerform(iterations: domains.count) { domains[$0].destroy() } }
        for domain in domains { try domain.waitUntilHalted() }
        let log = try BackgroundKvmstat(["--source", "libvirt", "-l", "-s", "0.1", "--format", "jsonl",
                                         "-f", "exits"])
        #expect(log.waitForLines(5), "no records")
        let (faults0, lines0) = (minorFaults(log.pid), log.linesSoFar)
        #expect(log.waitForLines(lines0 + 20))
        let (faults1, lines1) = (minorFaults(log.pid), log.linesSoFar)
        log.signal(SIGINT)
        let result = log.finish()
        #expect(result.status == 0, "\(result.stderr)")
        let perSample = Double(faults1 - faults0) / Double(max(lines1 - lines0, 1))
        #expect(perSample < 5, "\(faults1 - faults0) minor faults in \(lines1 - lines0) samples")
    }

    /// A process's minor page faults so far (`/proc/PID/stat`'s tenth field).
    private func minorFaults(_ pid: Int32) -> Int { Int(ProcStat(path: "/proc/\(pid)/stat")?[10] ?? 0) }

    @Test func screenShowsVCPUsAndGuests() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux") else { return }
        let domain = try LibvirtDomain(outs: 1_000, vcpus: 2)
        try domain.waitUntilHalted()
        let tmux = try TmuxSession(command: "'\(kvmstatBinary)' --source libvirt -i -p \(domain.pid) -f 'exits' -s 0.5")
        #expect(tmux.wait(timeout: 10) { $0.contains { $0.hasPrefix(" exits ") } } != nil, "\(tmux.screen())")
        tmux.send("x")
        #expect(tmux.wait(for: "   exits(vcpu0)") != nil, "\(tmux.screen())")
        tmux.send("x")
        tmux.send("b")
        #expect(tmux.wait(timeout: 10) { $0.contains { $0.hasPrefix(" \(domain.name) ") } } != nil, "\(tmux.screen())")
        tmux.send("q")
        #expect(tmux.wait(for: "EXIT=0") != nil)
    }
}

/// What an operator gets wrong or lacks: each a clear line and a non-zero status.
@Suite struct LibvirtFaultTests {
    @Test func missingLibraryNamesThePackage() throws {
        let result = try run(kvmstatBinary, ["--source", "libvirt", "-1"],
                             environment: ["KVMSTAT_LIBVIRT_LIBRARY": "/nonexistent/libvirt.so.0"])
        #expect(result.status == 1)
        #expect(result.stderr.hasSuffix("install the libvirt0 package (libvirt's client library)\n"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stdout.isEmpty)
    }

    @Test(.enabled(if: LibvirtDaemon.installed))
    func uriThatDoesNotConnect() throws {
        let result = try run(kvmstatBinary, ["--source", "libvirt", "--connect",
                                             "qemu:///system?socket=/nonexistent/libvirt-sock", "-1"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("kvmstat: libvirt: cannot read qemu:///system?socket=/nonexistent/libvirt-sock: "),
                "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stdout.isEmpty)
    }
}
